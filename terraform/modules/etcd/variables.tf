variable "name" {
  description = "Name prefix of the etcd instances, network interfaces and security group."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,30}$", var.name))
    error_message = "The name must be 1-31 characters of lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "existing_endpoints" {
  description = "Client URLs of an etcd you already run (http://host:2379). When given, the module creates nothing and passes them through as its endpoints output."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for e in var.existing_endpoints : can(regex("^https?://[^,]+$", e))])
    error_message = "The existing_endpoints must be http(s)://host:port URLs."
  }
}

variable "vpc_id" {
  description = "VPC of the etcd instances (unused with existing_endpoints)."
  type        = string
  default     = null
  validation {
    condition     = var.vpc_id == null || can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "The vpc_id must be null or a VPC id (vpc-...)."
  }
}

variable "subnet_ids" {
  description = "One subnet per etcd member, each in another availability zone: 1, 3 or 5 of them (3 for a cluster that survives a zone's loss). Unused with existing_endpoints."
  type        = list(string)
  default     = []
  validation {
    condition     = contains([0, 1, 3, 5], length(var.subnet_ids)) && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "The subnet_ids must be 1, 3 or 5 subnet ids (or none with existing_endpoints)."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the etcd members."
  type        = string
  default     = "t3.medium"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "The instance_type must look like family.size (e.g. t3.medium)."
  }
}

variable "ami_id" {
  description = "AMI of the members: Debian 12 (etcd comes from its etcd-server package). null: the latest Debian 12 AMI from Debian's public SSM parameter."
  type        = string
  default     = null
  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]+$", var.ami_id))
    error_message = "The ami_id must be null or an AMI id (ami-...)."
  }
}

variable "volume_size_gb" {
  description = "Size of each member's encrypted gp3 root volume, which holds etcd's data."
  type        = number
  default     = 20
  validation {
    condition     = var.volume_size_gb >= 8 && var.volume_size_gb <= 1024
    error_message = "The volume_size_gb must be from 8 to 1024."
  }
}

variable "ebs_kms_key_arn" {
  description = "KMS key encrypting the volumes; null: the account's default EBS key."
  type        = string
  default     = null
}

variable "auto_compaction_retention" {
  description = "etcd's --auto-compaction-retention in hours (periodic mode), so that rewritten keys' history does not pile up."
  type        = string
  default     = "1"
  validation {
    condition     = can(regex("^[0-9]+$", var.auto_compaction_retention))
    error_message = "The auto_compaction_retention must be a whole number of hours."
  }
}

variable "client_security_group_ids" {
  description = "Security groups allowed on etcd's client port 2379 (the brokers' security_group_id)."
  type        = list(string)
  default     = []
}

variable "client_cidr_blocks" {
  description = "CIDR blocks allowed on etcd's client port 2379."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.client_cidr_blocks : can(cidrnetmask(c))])
    error_message = "The client_cidr_blocks must be IPv4 CIDR blocks."
  }
}

variable "instance_profile_name" {
  description = "Instance profile of the members, e.g. for Systems Manager access; null: none (etcd calls no AWS API)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags of every resource."
  type        = map(string)
  default     = {}
}

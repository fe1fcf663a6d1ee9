variable "region" {
  description = "AWS region of the cluster and its bucket."
  type        = string
  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "The region must be an AWS region name such as eu-west-1."
  }
}

variable "name" {
  description = "Name of the cluster: prefix of every resource."
  type        = string
  default     = "sediment"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}$", var.name))
    error_message = "The name must be 1-23 characters of lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "vpc_id" {
  description = "VPC to run in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Three private subnets in three availability zones (with a route to S3: a NAT gateway or an S3 gateway endpoint)."
  type        = list(string)
  validation {
    condition     = length(var.private_subnet_ids) == 3
    error_message = "Give exactly three private subnets, one per availability zone."
  }
}

variable "bucket_name" {
  description = "Name of the archive bucket to create."
  type        = string
}

variable "archive_prefix" {
  description = "Key prefix of this cluster in the bucket."
  type        = string
  default     = "sediment"
}

variable "broker_count" {
  description = "Number of brokers."
  type        = number
  default     = 3
}

variable "sediment_binary_url" {
  description = "https:// or s3:// URL of the sediment binary (Linux x86-64)."
  type        = string
}

variable "sediment_binary_sha256" {
  description = "SHA-256 of that binary."
  type        = string
}

variable "client_cidr_blocks" {
  description = "CIDR blocks of the Kafka clients."
  type        = list(string)
}

variable "existing_etcd_endpoints" {
  description = "Client URLs of an etcd you already run; empty: create a three-member etcd on EC2."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags of every resource (the provider's default_tags)."
  type        = map(string)
  default     = { "app" = "sediment" }
}

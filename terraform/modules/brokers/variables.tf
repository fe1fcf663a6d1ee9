variable "name" {
  description = "Name of the broker group: prefix of the autoscaling group, launch template, security group and load balancer."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}$", var.name))
    error_message = "The name must be 1-23 characters of lower-case letters, digits and hyphens, starting with a letter (the load balancer's name is limited to 32)."
  }
}

variable "vpc_id" {
  description = "VPC of the brokers."
  type        = string
  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "The vpc_id must be a VPC id (vpc-...)."
  }
}

variable "subnet_ids" {
  description = "Private subnets the autoscaling group spreads the brokers over, one per availability zone; give three zones so that a zone's loss leaves two replicas of every partition."
  type        = list(string)
  validation {
    condition     = length(var.subnet_ids) >= 3 && length(distinct(var.subnet_ids)) == length(var.subnet_ids) && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "The subnet_ids must be at least three distinct subnet ids (subnet-...), in different availability zones."
  }
}

variable "broker_count" {
  description = "Number of brokers (the autoscaling group's desired, minimum and maximum size: brokers are not scaled on load)."
  type        = number
  default     = 3
  validation {
    condition     = var.broker_count >= 1 && var.broker_count <= 64 && floor(var.broker_count) == var.broker_count
    error_message = "The broker_count must be a whole number from 1 to 64."
  }
}

variable "broker_id_max" {
  description = "Highest broker id an instance may claim (ids are claimed from 1 upwards, lowest free first); at least broker_count, with room for instances replacing others while the old ones still drain."
  type        = number
  default     = 64
  validation {
    condition     = var.broker_id_max >= 1 && var.broker_id_max <= 100000 && floor(var.broker_id_max) == var.broker_id_max
    error_message = "The broker_id_max must be a whole number from 1 to 100000."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the brokers; a Nitro type (NVMe devices), with instance storage (e.g. m6id.large) when wal_storage is instance-store."
  type        = string
  default     = "m6i.large"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "The instance_type must look like family.size (e.g. m6i.large)."
  }
}

variable "ami_id" {
  description = "AMI of the brokers: Debian 12 (the user data uses apt, systemd and python3). null: the latest Debian 12 AMI from Debian's public SSM parameter."
  type        = string
  default     = null
  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]+$", var.ami_id))
    error_message = "The ami_id must be null or an AMI id (ami-...)."
  }
}

variable "instance_profile_name" {
  description = "Instance profile giving the brokers their S3 permissions (modules/iam with ec2 = true)."
  type        = string
  validation {
    condition     = length(var.instance_profile_name) > 0
    error_message = "The instance_profile_name must not be empty."
  }
}

variable "object_store_url" {
  description = "The brokers' --object-store: s3://bucket/prefix (modules/bucket output object_store_url)."
  type        = string
  validation {
    condition     = can(regex("^s3://[a-z0-9][a-z0-9.-]+[a-z0-9](/.*)?$", var.object_store_url))
    error_message = "The object_store_url must be s3://bucket/prefix."
  }
}

variable "region" {
  description = "AWS_REGION of the brokers (the bucket's region); null: the provider's region."
  type        = string
  default     = null
}

variable "etcd_endpoints" {
  description = "etcd client URLs (http://host:2379) of the cluster's metadata store (modules/etcd output endpoints)."
  type        = list(string)
  validation {
    condition     = length(var.etcd_endpoints) >= 1 && alltrue([for e in var.etcd_endpoints : can(regex("^https?://[^,]+$", e))])
    error_message = "The etcd_endpoints must be one or more http(s)://host:port URLs."
  }
}

variable "etcd_prefix" {
  description = "The cluster's key prefix in etcd (--etcd-prefix)."
  type        = string
  default     = "/sediment"
  validation {
    condition     = can(regex("^/", var.etcd_prefix))
    error_message = "The etcd_prefix must start with /."
  }
}

variable "wal_storage" {
  description = "Where the WAL lives: \"ebs\" (a gp3 volume per instance, deleted with the instance) or \"instance-store\" (the instance type's first NVMe instance-store disk, lost when the instance stops)."
  type        = string
  default     = "ebs"
  validation {
    condition     = contains(["ebs", "instance-store"], var.wal_storage)
    error_message = "The wal_storage must be \"ebs\" or \"instance-store\"."
  }
}

variable "wal_volume_size_gb" {
  description = "With wal_storage = ebs: size of the gp3 WAL volume in GiB."
  type        = number
  default     = 100
  validation {
    condition     = var.wal_volume_size_gb >= 10 && var.wal_volume_size_gb <= 16384
    error_message = "The wal_volume_size_gb must be from 10 to 16384."
  }
}

variable "wal_volume_iops" {
  description = "With wal_storage = ebs: provisioned IOPS of the gp3 WAL volume (3000 are included)."
  type        = number
  default     = 3000
  validation {
    condition     = var.wal_volume_iops >= 3000 && var.wal_volume_iops <= 16000
    error_message = "The wal_volume_iops must be from 3000 to 16000 (gp3)."
  }
}

variable "wal_volume_throughput" {
  description = "With wal_storage = ebs: throughput of the gp3 WAL volume in MiB/s (125 are included)."
  type        = number
  default     = 250
  validation {
    condition     = var.wal_volume_throughput >= 125 && var.wal_volume_throughput <= 1000
    error_message = "The wal_volume_throughput must be from 125 to 1000 (gp3)."
  }
}

variable "ebs_kms_key_arn" {
  description = "KMS key encrypting the root and WAL volumes; null: the account's default EBS key. The volumes are encrypted either way."
  type        = string
  default     = null
}

variable "sediment_binary_url" {
  description = "Where the user data downloads the sediment binary (Linux x86-64, glibc 2.36 or older, e.g. built by the Dockerfile's build stage): an https:// URL or an s3:// object the instance profile may read (modules/iam artifact_object_arns)."
  type        = string
  validation {
    condition     = can(regex("^(https|s3)://.+", var.sediment_binary_url))
    error_message = "The sediment_binary_url must be an https:// or s3:// URL."
  }
}

variable "sediment_binary_sha256" {
  description = "SHA-256 of the binary at sediment_binary_url; the instance refuses a download that does not match."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.sediment_binary_sha256))
    error_message = "The sediment_binary_sha256 must be 64 lower-case hex digits."
  }
}

variable "settings" {
  description = "More `sediment serve` settings by their TOML names (e.g. default_replication_factor = \"3\"), written as SEDIMENT_* variables. The module sets the addresses, data dir, rack, broker id, object store and etcd itself."
  type        = map(string)
  default     = {}
  validation {
    condition = alltrue([for k in keys(var.settings) : can(regex("^[a-z][a-z0-9_]*$", k)) && !contains([
      "config", "kafka_addr", "advertised_addr", "http_addr", "data_dir", "broker_id", "rack",
      "object_store", "etcd_endpoints", "etcd_prefix",
    ], k)])
    error_message = "The settings keys must be lower_snake_case serve settings other than the ones the module sets (config, kafka_addr, advertised_addr, http_addr, data_dir, broker_id, rack, object_store, etcd_endpoints, etcd_prefix)."
  }
}

variable "log_level" {
  description = "RUST_LOG of the brokers."
  type        = string
  default     = "info"
}

variable "kafka_port" {
  description = "Port of the Kafka listener."
  type        = number
  default     = 9092
  validation {
    condition     = var.kafka_port >= 1024 && var.kafka_port <= 65535
    error_message = "The kafka_port must be from 1024 to 65535 (the broker does not run as root)."
  }
}

variable "http_port" {
  description = "Port of /health, /ready and /metrics."
  type        = number
  default     = 9464
  validation {
    condition     = var.http_port >= 1024 && var.http_port <= 65535
    error_message = "The http_port must be from 1024 to 65535 (the broker does not run as root)."
  }
}

variable "client_cidr_blocks" {
  description = "CIDR blocks of Kafka clients allowed to reach the brokers' Kafka port (the brokers always reach each other)."
  type        = list(string)
  validation {
    condition     = alltrue([for c in var.client_cidr_blocks : can(cidrnetmask(c))])
    error_message = "The client_cidr_blocks must be IPv4 CIDR blocks."
  }
}

variable "metrics_cidr_blocks" {
  description = "CIDR blocks allowed to reach the HTTP port (/metrics, /health, /ready), e.g. Prometheus."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.metrics_cidr_blocks : can(cidrnetmask(c))])
    error_message = "The metrics_cidr_blocks must be IPv4 CIDR blocks."
  }
}

variable "create_bootstrap_nlb" {
  description = "Create an internal network load balancer as a stable bootstrap address (clients then connect to each broker's advertised private IP directly)."
  type        = bool
  default     = true
}

variable "bootstrap_nlb_deletion_protection" {
  description = "Deletion protection of the bootstrap NLB (clients are configured with its name); set false for stacks that terraform destroy should remove."
  type        = bool
  default     = true
}

variable "etcd_cidr_blocks" {
  description = "Where the brokers may reach etcd (egress on the endpoints' ports); empty: the VPC's CIDR block."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.etcd_cidr_blocks : can(cidrnetmask(c))])
    error_message = "The etcd_cidr_blocks must be IPv4 CIDR blocks."
  }
}

variable "stop_timeout_seconds" {
  description = "Seconds systemd gives a stopping broker before SIGKILL (hand-over of leadership, draining, an upload in progress)."
  type        = number
  default     = 120
  validation {
    condition     = var.stop_timeout_seconds >= 10 && var.stop_timeout_seconds <= 3600
    error_message = "The stop_timeout_seconds must be from 10 to 3600."
  }
}

variable "tags" {
  description = "Tags of every resource, and of the instances and their volumes."
  type        = map(string)
  default     = {}
}

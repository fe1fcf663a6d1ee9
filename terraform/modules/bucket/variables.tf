variable "bucket_name" {
  description = "Name of the S3 bucket holding the Sediment archive (globally unique)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name)) && !can(regex("\\.\\.", var.bucket_name))
    error_message = "The bucket_name must be 3-63 characters of lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit."
  }
}

variable "archive_prefix" {
  description = "Key prefix the brokers write under (the path of --object-store s3://bucket/prefix), without leading or trailing slash."
  type        = string
  default     = "sediment"
  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$", var.archive_prefix))
    error_message = "The archive_prefix must be a non-empty S3 key prefix without leading, trailing or doubled slashes."
  }
}

variable "kms_key_arn" {
  description = "KMS key for SSE-KMS encryption of the archive; null encrypts with S3-managed keys (SSE-S3, AES256). The brokers' role then also needs kms:GenerateDataKey and kms:Decrypt on it (modules/iam kms_key_arn)."
  type        = string
  default     = null
  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "The kms_key_arn must be null or a KMS key ARN."
  }
}

variable "abort_incomplete_multipart_upload_days" {
  description = "Days after which S3 aborts multipart uploads that were never completed (a broker that died mid-upload leaves its parts, which are billed until removed)."
  type        = number
  default     = 2
  validation {
    condition     = var.abort_incomplete_multipart_upload_days >= 1 && var.abort_incomplete_multipart_upload_days <= 365 && floor(var.abort_incomplete_multipart_upload_days) == var.abort_incomplete_multipart_upload_days
    error_message = "The abort_incomplete_multipart_upload_days must be a whole number from 1 to 365."
  }
}

variable "archive_expiration_days" {
  description = "Optional backstop expiry, in days, of the archived segments under <archive_prefix>/topics/. Topic retention (retention.ms / retention.bytes) is what deletes segments; a segment S3 expires while the index still lists it makes reads of its offsets fail, so set this well above the longest retention of any topic, or leave it null (no expiry). The segment index manifests under <archive_prefix>/_index/ never expire."
  type        = number
  default     = null
  validation {
    condition     = var.archive_expiration_days == null || try(var.archive_expiration_days >= 1 && floor(var.archive_expiration_days) == var.archive_expiration_days, false)
    error_message = "The archive_expiration_days must be null or a whole number of days, at least 1."
  }
}

variable "versioning_enabled" {
  description = "Keep previous versions of overwritten and deleted objects. Off by default: segments are written once and deleted by retention, so versions only add cost; when on, noncurrent versions expire after noncurrent_version_expiration_days."
  type        = bool
  default     = false
}

variable "noncurrent_version_expiration_days" {
  description = "With versioning_enabled: days after which noncurrent object versions are deleted."
  type        = number
  default     = 7
  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "The noncurrent_version_expiration_days must be a whole number, at least 1."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy delete a bucket that still holds objects (the whole archive). Keep false outside of tests."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags of the bucket."
  type        = map(string)
  default     = {}
}

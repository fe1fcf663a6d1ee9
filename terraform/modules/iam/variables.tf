variable "name" {
  description = "Name of the IAM role (and of its policy and instance profile)."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,56}$", var.name))
    error_message = "The name must be 1-56 characters of letters, digits and +=,.@_- (IAM names, leaving room for suffixes)."
  }
}

variable "bucket_arn" {
  description = "ARN of the archive bucket (modules/bucket output bucket_arn)."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]+[a-z0-9]$", var.bucket_arn))
    error_message = "The bucket_arn must be an S3 bucket ARN (arn:aws:s3:::name)."
  }
}

variable "archive_prefix" {
  description = "Key prefix the brokers write under; the policy allows objects under <prefix>/ only."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$", var.archive_prefix))
    error_message = "The archive_prefix must be a non-empty S3 key prefix without leading, trailing or doubled slashes."
  }
}

variable "kms_key_arn" {
  description = "KMS key encrypting the bucket (SSE-KMS); null when the bucket uses SSE-S3."
  type        = string
  default     = null
  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "The kms_key_arn must be null or a KMS key ARN."
  }
}

variable "ec2" {
  description = "Let EC2 instances assume the role, and create an instance profile for it (brokers on EC2, modules/brokers). Set this, irsa, or both: a role with neither has an empty trust policy, which IAM refuses."
  type        = bool
  default     = false
}

variable "irsa" {
  description = "Let a Kubernetes service account assume the role through an EKS cluster's IAM OIDC provider (IRSA; the Helm chart's serviceAccount.irsaRoleArn). null: no IRSA trust. oidc_provider_url is the issuer without https:// (e.g. oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE)."
  type = object({
    oidc_provider_arn    = string
    oidc_provider_url    = string
    namespace            = string
    service_account_name = string
  })
  default = null
  validation {
    condition = var.irsa == null || try(
      can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/", var.irsa.oidc_provider_arn)) &&
      !can(regex("^https?://", var.irsa.oidc_provider_url)) &&
      can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.irsa.namespace)) &&
      can(regex("^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", var.irsa.service_account_name)),
      false
    )
    error_message = "The irsa object needs an OIDC provider ARN, its URL without https://, and a valid Kubernetes namespace and service account name."
  }
}

variable "artifact_object_arns" {
  description = "S3 object ARNs the role may also read, e.g. the sediment binary that modules/brokers' user data downloads from s3://."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for a in var.artifact_object_arns : can(regex("^arn:aws[a-z-]*:s3:::.+/.+", a))])
    error_message = "Each of artifact_object_arns must be an S3 object ARN (arn:aws:s3:::bucket/key)."
  }
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary of the role, where the account requires one; null for none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags of the role and the instance profile."
  type        = map(string)
  default     = {}
}

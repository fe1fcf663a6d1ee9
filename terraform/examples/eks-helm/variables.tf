variable "region" {
  description = "AWS region of the EKS cluster and the bucket."
  type        = string
  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "The region must be an AWS region name such as eu-west-1."
  }
}

variable "eks_cluster_name" {
  description = "Name of the existing EKS cluster the chart is installed in."
  type        = string
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (IRSA must be set up on the cluster)."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/", var.oidc_provider_arn))
    error_message = "The oidc_provider_arn must be an IAM OIDC provider ARN."
  }
}

variable "namespace" {
  description = "Kubernetes namespace of the Helm release."
  type        = string
  default     = "sediment"
}

variable "service_account_name" {
  description = "Name of the brokers' ServiceAccount (the chart's serviceAccount.name)."
  type        = string
  default     = "sediment"
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

variable "image_repository" {
  description = "Registry and name of the sediment image built from the Dockerfile."
  type        = string
}

variable "image_tag" {
  description = "Tag of that image."
  type        = string
  default     = "0.1.0"
}

variable "tags" {
  description = "Tags of every resource (the provider's default_tags)."
  type        = map(string)
  default     = { "app" = "sediment" }
}

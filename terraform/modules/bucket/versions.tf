terraform {
  required_version = ">= 1.0"
  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 4.9: the bucket's encryption, lifecycle, versioning and ownership are resources of
      # their own (bucket.aws4.tf) instead of the deprecated inline blocks.
      version = ">= 4.9"
    }
  }
}

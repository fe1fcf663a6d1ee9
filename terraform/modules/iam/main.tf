# The brokers' IAM role: what `sediment serve --object-store s3://bucket/prefix` needs and
# nothing more. The broker reads, writes and deletes segment and manifest objects under the
# prefix, lists them (retention, start-up write check), and uploads large segments in
# multipart uploads that it completes or aborts.

locals {
  prefix = trimsuffix(var.archive_prefix, "/")
}

data "aws_iam_policy_document" "trust" {
  dynamic "statement" {
    for_each = var.ec2 ? [1] : []
    content {
      sid     = "Ec2Instances"
      actions = ["sts:AssumeRole"]
      principals {
        type        = "Service"
        identifiers = ["ec2.amazonaws.com"]
      }
    }
  }
  dynamic "statement" {
    for_each = var.irsa == null ? [] : [var.irsa]
    content {
      sid     = "KubernetesServiceAccount"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [statement.value.oidc_provider_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "${statement.value.oidc_provider_url}:sub"
        values   = ["system:serviceaccount:${statement.value.namespace}:${statement.value.service_account_name}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${statement.value.oidc_provider_url}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }
}

data "aws_iam_policy_document" "archive" {
  statement {
    sid       = "ListThePrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [local.prefix, "${local.prefix}/*"]
    }
  }
  statement {
    sid = "ObjectsUnderThePrefix"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${var.bucket_arn}/${local.prefix}/*"]
  }
  dynamic "statement" {
    for_each = length(var.artifact_object_arns) > 0 ? [1] : []
    content {
      sid       = "ReadArtifacts"
      actions   = ["s3:GetObject"]
      resources = var.artifact_object_arns
    }
  }
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "BucketKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }
}

resource "aws_iam_role" "this" {
  name                 = var.name
  description          = "Sediment brokers: the archive under ${var.bucket_arn}/${local.prefix}/"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags
}

resource "aws_iam_policy" "archive" {
  name        = "${var.name}-archive"
  description = "Sediment brokers: objects under ${var.bucket_arn}/${local.prefix}/"
  policy      = data.aws_iam_policy_document.archive.json
  tags        = var.tags
}

resource "aws_iam_role_policy_attachment" "archive" {
  role       = aws_iam_role.this.name
  policy_arn = aws_iam_policy.archive.arn
}

resource "aws_iam_instance_profile" "this" {
  count = var.ec2 ? 1 : 0
  name  = var.name
  role  = aws_iam_role.this.name
  tags  = var.tags
}

# The bucket holding the Sediment archive: Parquet segments under <prefix>/topics/ and the
# segment index manifests under <prefix>/_index/ (docs/archive-format.md, ADR 0024).
# Encryption, lifecycle, versioning and ownership are in bucket.aws4.tf.

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_18:Server access logs need a second bucket and only the brokers write here; use CloudTrail data events where an audit trail is required.
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles the archive's cost for a disaster-recovery choice that belongs to the operator, not to the module.
  #checkov:skip=CKV2_AWS_62:Nothing consumes event notifications of the archive; the brokers keep their own index in etcd.
  #checkov:skip=CKV_AWS_145:SSE-S3 by default, SSE-KMS when kms_key_arn is set; a KMS key is the operator's to create and pay for.
  #checkov:skip=CKV_AWS_21:Versioning is optional (versioning_enabled): segments are written once and deleted by retention, so old versions only cost.
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

data "aws_iam_policy_document" "tls_only" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.this.arn,
      "${aws_s3_bucket.this.arn}/*",
    ]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "tls_only" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.tls_only.json
  # S3 refuses a bucket policy while the public access block is being changed.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

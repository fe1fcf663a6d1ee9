# Resources of AWS provider 4.x and later (in 3.x these settings were inline blocks of
# aws_s3_bucket). tests/deploy/check.sh validates the modules with provider 3.39, the only one
# it can install offline, in a copy without *.aws4.tf files; checkov and trivy read this one.

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    # ACLs off: the bucket owner owns every object.
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = var.kms_key_arn != null
  }
}

# Only when asked for: a bucket that was never versioned stays so (Suspended is a state of
# its own, which a never-versioned bucket need not enter).
resource "aws_s3_bucket_versioning" "this" {
  count  = var.versioning_enabled ? 1 : 0
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  # The whole bucket: parts of an upload no broker will complete are billed wherever they are.
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_upload_days
    }
  }

  # The optional rules are always there, disabled when not asked for (dynamic blocks would do
  # too, but checkov cannot evaluate a configuration that has them).
  rule {
    id     = "expire-archived-segments"
    status = var.archive_expiration_days == null ? "Disabled" : "Enabled"
    filter {
      prefix = "${var.archive_prefix}/topics/"
    }
    expiration {
      days = var.archive_expiration_days == null ? 36500 : var.archive_expiration_days
    }
  }

  rule {
    id     = "expire-noncurrent-versions"
    status = var.versioning_enabled ? "Enabled" : "Disabled"
    filter {
      prefix = "${var.archive_prefix}/"
    }
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }
  }

  # Lifecycle rules apply to versions once versioning is settled.
  depends_on = [aws_s3_bucket_versioning.this]
}

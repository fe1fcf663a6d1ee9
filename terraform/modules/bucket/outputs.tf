output "bucket_name" {
  description = "Name of the bucket."
  value       = aws_s3_bucket.this.id
}

output "bucket_arn" {
  description = "ARN of the bucket (input of modules/iam)."
  value       = aws_s3_bucket.this.arn
}

output "archive_prefix" {
  description = "The key prefix the brokers write under."
  value       = var.archive_prefix
}

output "object_store_url" {
  description = "The brokers' --object-store value: s3://<bucket>/<prefix>."
  value       = "s3://${aws_s3_bucket.this.id}/${var.archive_prefix}"
}

output "bucket_region" {
  description = "Region of the bucket (the brokers' AWS_REGION)."
  value       = aws_s3_bucket.this.region
}

output "bootstrap_servers" {
  description = "Bootstrap address for Kafka clients (the internal NLB)."
  value       = module.brokers.bootstrap_servers
}

output "object_store_url" {
  description = "Where the archive is: s3://bucket/prefix (DuckDB and Spark read it directly)."
  value       = module.bucket.object_store_url
}

output "etcd_endpoints" {
  description = "The etcd the brokers use."
  value       = module.etcd.endpoints
}

output "broker_role_arn" {
  description = "The brokers' IAM role."
  value       = module.iam.role_arn
}

output "autoscaling_group_name" {
  description = "The brokers' autoscaling group (instance refresh replaces one broker at a time)."
  value       = module.brokers.autoscaling_group_name
}

output "endpoints" {
  description = "etcd client URLs for the brokers (--etcd-endpoints): the members' http://<ip>:2379, or existing_endpoints."
  value       = local.create ? [for ip in local.ips : "http://${ip}:2379"] : var.existing_endpoints
}

output "security_group_id" {
  description = "Security group of the etcd members, or null with existing_endpoints."
  value       = local.create ? aws_security_group.etcd[0].id : null
}

output "instance_ids" {
  description = "Instance ids of the etcd members (empty with existing_endpoints)."
  value       = aws_instance.member[*].id
}

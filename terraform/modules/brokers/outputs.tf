output "autoscaling_group_name" {
  description = "Name of the brokers' autoscaling group."
  value       = aws_autoscaling_group.brokers.name
}

output "launch_template_id" {
  description = "Id of the brokers' launch template."
  value       = aws_launch_template.brokers.id
}

output "security_group_id" {
  description = "Security group of the brokers (allow it on etcd's client port)."
  value       = aws_security_group.brokers.id
}

output "bootstrap_servers" {
  description = "Bootstrap address for clients: the NLB's DNS name and Kafka port, or null without the NLB (then any broker's private IP and port bootstraps)."
  value       = var.create_bootstrap_nlb ? "${aws_lb.bootstrap[0].dns_name}:${var.kafka_port}" : null
}

output "ami_id" {
  description = "AMI the brokers run."
  value       = local.ami_id
  sensitive   = true
}

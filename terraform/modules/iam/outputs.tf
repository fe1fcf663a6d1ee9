output "role_arn" {
  description = "ARN of the role (the Helm chart's serviceAccount.irsaRoleArn for IRSA)."
  value       = aws_iam_role.this.arn
}

output "role_name" {
  description = "Name of the role."
  value       = aws_iam_role.this.name
}

output "policy_arn" {
  description = "ARN of the least-privilege archive policy attached to the role."
  value       = aws_iam_policy.archive.arn
}

output "instance_profile_name" {
  description = "Name of the EC2 instance profile (modules/brokers input), or null when ec2 is false."
  value       = var.ec2 ? aws_iam_instance_profile.this[0].name : null
}

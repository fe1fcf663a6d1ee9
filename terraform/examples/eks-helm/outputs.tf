output "role_arn" {
  description = "The IRSA role of the brokers' ServiceAccount."
  value       = module.iam.role_arn
}

output "object_store_url" {
  description = "Where the archive is: s3://bucket/prefix."
  value       = module.bucket.object_store_url
}

output "helm_values" {
  description = "Values for charts/sediment (YAML): the image, the bucket, the IRSA role, racks from node zones."
  value       = yamlencode(local.helm_values)
}

output "helm_command" {
  description = "The command installing the chart with those values (run from the repository's top directory)."
  value       = "terraform -chdir=terraform/examples/eks-helm output -raw helm_values > sediment-values.yaml && helm install sediment charts/sediment --namespace ${var.namespace} --create-namespace -f sediment-values.yaml"
}

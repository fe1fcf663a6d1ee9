# Sediment on EKS: the bucket and an IRSA role for the chart's ServiceAccount, and the Helm
# values that connect them. Terraform does not install the chart here (that would need the
# helm provider); `terraform output -raw helm_values` is the values file for
#
#     helm install sediment charts/sediment -n sediment --create-namespace -f values.yaml

data "aws_eks_cluster" "this" {
  name = var.eks_cluster_name
}

module "bucket" {
  source         = "../../modules/bucket"
  bucket_name    = var.bucket_name
  archive_prefix = var.archive_prefix
}

module "iam" {
  source         = "../../modules/iam"
  name           = "${var.eks_cluster_name}-sediment"
  bucket_arn     = module.bucket.bucket_arn
  archive_prefix = module.bucket.archive_prefix
  irsa = {
    oidc_provider_arn    = var.oidc_provider_arn
    oidc_provider_url    = trimprefix(data.aws_eks_cluster.this.identity[0].oidc[0].issuer, "https://")
    namespace            = var.namespace
    service_account_name = var.service_account_name
  }
}

locals {
  helm_values = {
    image = {
      repository = var.image_repository
      tag        = var.image_tag
    }
    objectStore = {
      bucket = module.bucket.bucket_name
      prefix = module.bucket.archive_prefix
      region = var.region
    }
    serviceAccount = {
      create      = true
      name        = var.service_account_name
      irsaRoleArn = module.iam.role_arn
    }
    # EKS nodes carry topology.kubernetes.io/zone: replicas go to different zones.
    rack = {
      fromNodeZone = true
    }
    settings = {
      default_replication_factor = 3
    }
  }
}

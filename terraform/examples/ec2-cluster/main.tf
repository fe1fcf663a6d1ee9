# A complete Sediment cluster on EC2: the archive bucket, the brokers' IAM role and instance
# profile, a three-member etcd (or an existing one), and three brokers in an autoscaling
# group over three zones behind an internal bootstrap NLB.

locals {
  # When the binary lives in S3, the brokers' role may read that one object.
  binary_object_arns = can(regex("^s3://", var.sediment_binary_url)) ? [
    "arn:aws:s3:::${trimprefix(var.sediment_binary_url, "s3://")}",
  ] : []
}

module "bucket" {
  source         = "../../modules/bucket"
  bucket_name    = var.bucket_name
  archive_prefix = var.archive_prefix
}

module "iam" {
  source               = "../../modules/iam"
  name                 = "${var.name}-brokers"
  bucket_arn           = module.bucket.bucket_arn
  archive_prefix       = module.bucket.archive_prefix
  ec2                  = true
  artifact_object_arns = local.binary_object_arns
}

module "etcd" {
  source                    = "../../modules/etcd"
  name                      = "${var.name}-etcd"
  existing_endpoints        = var.existing_etcd_endpoints
  vpc_id                    = var.vpc_id
  subnet_ids                = length(var.existing_etcd_endpoints) > 0 ? [] : var.private_subnet_ids
  client_security_group_ids = [module.brokers.security_group_id]
}

module "brokers" {
  source                 = "../../modules/brokers"
  name                   = var.name
  vpc_id                 = var.vpc_id
  subnet_ids             = var.private_subnet_ids
  broker_count           = var.broker_count
  instance_profile_name  = module.iam.instance_profile_name
  object_store_url       = module.bucket.object_store_url
  region                 = var.region
  etcd_endpoints         = module.etcd.endpoints
  sediment_binary_url    = var.sediment_binary_url
  sediment_binary_sha256 = var.sediment_binary_sha256
  client_cidr_blocks     = var.client_cidr_blocks
  settings = {
    default_replication_factor = tostring(min(3, var.broker_count))
  }
}

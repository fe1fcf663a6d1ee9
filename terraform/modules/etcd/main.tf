# A static etcd cluster on EC2 for Sediment's metadata, or, with existing_endpoints, nothing
# but those endpoints passed through. Each member gets a network interface of its own first,
# so every member's address is known before any instance starts (etcd's initial cluster names
# them all) and stays the same if the instance is replaced. Plain http inside the VPC,
# reachable only from the client security groups and CIDRs.

locals {
  create  = length(var.existing_endpoints) == 0
  members = local.create ? length(var.subnet_ids) : 0
  ips     = aws_network_interface.member[*].private_ip
  initial_cluster = join(",", [
    for i, ip in local.ips : "${var.name}-${i}=http://${ip}:2380"
  ])
  ami_id = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.debian[0].value
  tags   = merge(var.tags, { "sediment:etcd" = var.name })
}

data "aws_ssm_parameter" "debian" {
  count = local.create && var.ami_id == null ? 1 : 0
  name  = "/aws/service/debian/release/bookworm/latest/amd64"
}

resource "aws_security_group" "etcd" {
  count       = local.create ? 1 : 0
  name        = "${var.name}-etcd"
  description = "etcd members of Sediment"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_security_group_rule" "peers" {
  count             = local.create ? 1 : 0
  security_group_id = aws_security_group.etcd[0].id
  description       = "etcd peer and client traffic between members"
  type              = "ingress"
  protocol          = "tcp"
  from_port         = 2379
  to_port           = 2380
  self              = true
}

resource "aws_security_group_rule" "client_groups" {
  count                    = local.create ? length(var.client_security_group_ids) : 0
  security_group_id        = aws_security_group.etcd[0].id
  description              = "etcd clients (Sediment brokers)"
  type                     = "ingress"
  protocol                 = "tcp"
  from_port                = 2379
  to_port                  = 2379
  source_security_group_id = var.client_security_group_ids[count.index]
}

resource "aws_security_group_rule" "client_cidrs" {
  count             = local.create && length(var.client_cidr_blocks) > 0 ? 1 : 0
  security_group_id = aws_security_group.etcd[0].id
  description       = "etcd clients"
  type              = "ingress"
  protocol          = "tcp"
  from_port         = 2379
  to_port           = 2379
  cidr_blocks       = var.client_cidr_blocks
}

resource "aws_security_group_rule" "egress_web" {
  for_each          = local.create ? toset(["80", "443"]) : toset([])
  security_group_id = aws_security_group.etcd[0].id
  description       = "Debian packages at first boot"
  type              = "egress"
  protocol          = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
  cidr_blocks       = ["0.0.0.0/0"]
}

resource "aws_security_group_rule" "egress_peers" {
  count             = local.create ? 1 : 0
  security_group_id = aws_security_group.etcd[0].id
  description       = "etcd peer and client traffic to the other members"
  type              = "egress"
  protocol          = "tcp"
  from_port         = 2379
  to_port           = 2380
  self              = true
}

resource "aws_network_interface" "member" {
  count           = local.members
  subnet_id       = var.subnet_ids[count.index]
  security_groups = [aws_security_group.etcd[0].id]
  description     = "etcd member ${var.name}-${count.index}"
  tags            = merge(local.tags, { Name = "${var.name}-${count.index}" })
}

resource "aws_instance" "member" {
  #checkov:skip=CKV2_AWS_41:etcd calls no AWS API; instance_profile_name attaches a role (e.g. for Systems Manager) where one is wanted.
  count                = local.members
  ami                  = local.ami_id
  instance_type        = var.instance_type
  monitoring           = true
  ebs_optimized        = true
  iam_instance_profile = var.instance_profile_name
  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    name                      = "${var.name}-${count.index}"
    ip                        = aws_network_interface.member[count.index].private_ip
    initial_cluster           = local.initial_cluster
    cluster_token             = var.name
    auto_compaction_retention = var.auto_compaction_retention
  })

  network_interface {
    device_index         = 0
    network_interface_id = aws_network_interface.member[count.index].id
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.volume_size_gb
    encrypted             = true
    kms_key_id            = var.ebs_kms_key_arn
    delete_on_termination = true
  }

  tags        = merge(local.tags, { Name = "${var.name}-${count.index}" })
  volume_tags = local.tags

  # A member's identity is in its data: a new instance would come up empty and could not
  # rejoin by itself (see terraform/README.md), so changes of the AMI or user data do not
  # replace running members.
  lifecycle {
    ignore_changes = [ami, user_data]
  }
}

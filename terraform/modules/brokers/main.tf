# Sediment brokers on EC2: one autoscaling group over three zones, a launch template whose
# user data installs `sediment serve` as a systemd unit with the zone as --rack, and an
# optional internal NLB as the bootstrap address. Broker ids are claimed at start-up (see
# files/start.sh), so instances are interchangeable and the group needs no per-instance state.

data "aws_region" "current" {}

data "aws_vpc" "this" {
  id = var.vpc_id
}

data "aws_ssm_parameter" "debian" {
  count = var.ami_id == null ? 1 : 0
  name  = "/aws/service/debian/release/bookworm/latest/amd64"
}

locals {
  region = coalesce(var.region, data.aws_region.current.name)
  ami_id = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.debian[0].value
  # The user data finds the WAL disk by its NVMe model name.
  wal_disk_model = var.wal_storage == "ebs" ? "Amazon Elastic Block Store" : "Amazon EC2 NVMe Instance Storage"
  static_env = join("", concat(
    [
      "SEDIMENT_OBJECT_STORE=${var.object_store_url}\n",
      "SEDIMENT_ETCD_ENDPOINTS=${join(",", var.etcd_endpoints)}\n",
      "SEDIMENT_ETCD_PREFIX=${var.etcd_prefix}\n",
    ],
    [for k, v in var.settings : "SEDIMENT_${upper(k)}=${v}\n"],
  ))
  user_data = templatefile("${path.module}/templates/user-data.sh.tftpl", {
    region               = local.region
    kafka_port           = var.kafka_port
    http_port            = var.http_port
    log_level            = var.log_level
    broker_id_max        = var.broker_id_max
    wal_disk_model       = local.wal_disk_model
    binary_url           = var.sediment_binary_url
    binary_sha256        = var.sediment_binary_sha256
    stop_timeout_seconds = var.stop_timeout_seconds
    static_env           = base64encode(local.static_env)
    start_sh             = filebase64("${path.module}/files/start.sh")
    free_broker_id_py    = filebase64("${path.module}/files/free-broker-id.py")
  })
  tags = merge(var.tags, { "sediment:group" = var.name })
  # The ports of the etcd endpoints (2379 where a URL names none).
  etcd_ports       = distinct([for e in var.etcd_endpoints : try(regex("^[a-z]+://[^/]+:([0-9]+)/?$", e)[0], "2379")])
  etcd_cidr_blocks = length(var.etcd_cidr_blocks) > 0 ? var.etcd_cidr_blocks : [data.aws_vpc.this.cidr_block]
}

resource "aws_security_group" "brokers" {
  name        = "${var.name}-brokers"
  description = "Sediment brokers: Kafka and HTTP ports"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

# Followers fetch from leaders over the Kafka port; the admin commands use it too.
resource "aws_security_group_rule" "kafka_self" {
  security_group_id = aws_security_group.brokers.id
  description       = "Kafka protocol between brokers (replication)"
  type              = "ingress"
  protocol          = "tcp"
  from_port         = var.kafka_port
  to_port           = var.kafka_port
  self              = true
}

resource "aws_security_group_rule" "kafka_clients" {
  count             = length(var.client_cidr_blocks) > 0 ? 1 : 0
  security_group_id = aws_security_group.brokers.id
  description       = "Kafka protocol from clients (through the NLB too: it keeps client addresses)"
  type              = "ingress"
  protocol          = "tcp"
  from_port         = var.kafka_port
  to_port           = var.kafka_port
  cidr_blocks       = var.client_cidr_blocks
}

resource "aws_security_group_rule" "http_metrics" {
  count             = length(var.metrics_cidr_blocks) > 0 ? 1 : 0
  security_group_id = aws_security_group.brokers.id
  description       = "HTTP /metrics, /health, /ready"
  type              = "ingress"
  protocol          = "tcp"
  from_port         = var.http_port
  to_port           = var.http_port
  cidr_blocks       = var.metrics_cidr_blocks
}

resource "aws_security_group_rule" "http_nlb_health" {
  count             = var.create_bootstrap_nlb ? 1 : 0
  security_group_id = aws_security_group.brokers.id
  description       = "NLB health checks of /ready, from the VPC"
  type              = "ingress"
  protocol          = "tcp"
  from_port         = var.http_port
  to_port           = var.http_port
  cidr_blocks       = [data.aws_vpc.this.cidr_block]
}

# Egress: HTTPS (S3, STS, an https:// binary download), HTTP (Debian's package mirrors, for
# awscli when the binary is in S3), the other brokers, and etcd.
resource "aws_security_group_rule" "egress_web" {
  for_each          = toset(["80", "443"])
  security_group_id = aws_security_group.brokers.id
  description       = each.key == "443" ? "HTTPS: S3, STS, the binary download" : "HTTP: Debian packages"
  type              = "egress"
  protocol          = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
  cidr_blocks       = ["0.0.0.0/0"]
}

resource "aws_security_group_rule" "egress_kafka_self" {
  security_group_id = aws_security_group.brokers.id
  description       = "Kafka protocol to other brokers (followers fetch from leaders)"
  type              = "egress"
  protocol          = "tcp"
  from_port         = var.kafka_port
  to_port           = var.kafka_port
  self              = true
}

resource "aws_security_group_rule" "egress_etcd" {
  for_each          = toset(local.etcd_ports)
  security_group_id = aws_security_group.brokers.id
  description       = "etcd client port"
  type              = "egress"
  protocol          = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
  cidr_blocks       = local.etcd_cidr_blocks
}

resource "aws_launch_template" "brokers" {
  name_prefix            = "${var.name}-"
  description            = "Sediment broker"
  image_id               = local.ami_id
  instance_type          = var.instance_type
  user_data              = base64encode(local.user_data)
  update_default_version = true
  ebs_optimized          = true
  vpc_security_group_ids = [aws_security_group.brokers.id]

  iam_instance_profile {
    name = var.instance_profile_name
  }

  # IMDSv2 only, and one hop: containers on the instance cannot borrow its credentials.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  monitoring {
    enabled = true
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_type           = "gp3"
      volume_size           = 16
      encrypted             = true
      kms_key_id            = var.ebs_kms_key_arn
      delete_on_termination = true
    }
  }

  dynamic "block_device_mappings" {
    for_each = var.wal_storage == "ebs" ? [1] : []
    content {
      device_name = "/dev/sdf"
      ebs {
        volume_type           = "gp3"
        volume_size           = var.wal_volume_size_gb
        iops                  = var.wal_volume_iops
        throughput            = var.wal_volume_throughput
        encrypted             = true
        kms_key_id            = var.ebs_kms_key_arn
        delete_on_termination = true
      }
    }
  }

  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${var.name}-broker" })
  }

  tag_specifications {
    resource_type = "volume"
    tags          = local.tags
  }

  tags = local.tags
}

resource "aws_autoscaling_group" "brokers" {
  name_prefix         = "${var.name}-"
  vpc_zone_identifier = var.subnet_ids
  desired_capacity    = var.broker_count
  min_size            = var.broker_count
  max_size            = var.broker_count
  # A broker counts as healthy once it answers /ready through the NLB's health check.
  health_check_type         = var.create_bootstrap_nlb ? "ELB" : "EC2"
  health_check_grace_period = 300
  target_group_arns         = var.create_bootstrap_nlb ? [aws_lb_target_group.kafka[0].arn] : []
  default_cooldown          = 60

  launch_template {
    id      = aws_launch_template.brokers.id
    version = aws_launch_template.brokers.latest_version
  }

  # One broker at a time when the launch template changes (a new instance claims the id that
  # the replaced one gave up when it stopped).
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = floor(100 * (var.broker_count - 1) / var.broker_count)
      instance_warmup        = 120
    }
  }

  dynamic "tag" {
    for_each = local.tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}

resource "aws_lb" "bootstrap" {
  #checkov:skip=CKV_AWS_91:NLB access logs exist only for TLS listeners; this one forwards plain TCP (the broker has no TLS yet).
  count                            = var.create_bootstrap_nlb ? 1 : 0
  name                             = "${var.name}-bootstrap"
  internal                         = true
  load_balancer_type               = "network"
  subnets                          = var.subnet_ids
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.bootstrap_nlb_deletion_protection
  tags                             = local.tags
}

resource "aws_lb_target_group" "kafka" {
  count                = var.create_bootstrap_nlb ? 1 : 0
  name_prefix          = "sdmt-"
  port                 = var.kafka_port
  protocol             = "TCP"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  deregistration_delay = 30
  health_check {
    protocol            = "HTTP"
    port                = tostring(var.http_port)
    path                = "/ready"
    healthy_threshold   = 2
    unhealthy_threshold = 2
    interval            = 10
  }
  tags = local.tags
}

resource "aws_lb_listener" "kafka" {
  count             = var.create_bootstrap_nlb ? 1 : 0
  load_balancer_arn = aws_lb.bootstrap[0].arn
  port              = var.kafka_port
  protocol          = "TCP"
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.kafka[0].arn
  }
}

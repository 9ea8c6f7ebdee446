//! `redisctl adopt` (issue #18), end to end in the sandbox: a VPC built by hand through the EC2
//! API as the reference procedure builds it (its Names, a route table to the gateway, one
//! security group, three t2.micro with unencrypted root volumes, one of them at an address DHCP
//! chose) is refused while the spec does not match it (the spec line to write named, nothing
//! tagged), then adopted, and one apply makes it the cluster of the spec: nothing of the hand
//! build is created again or replaced, `verify` passes, a second plan is empty, and `destroy`
//! leaves the account as before the hand build.
//!
//! The nodes run Redis as the reference procedure starts it (as root, from a shell, with its own
//! CA, plaintext passwords in users.acl, a cluster made with `redis-cli --cluster create`, 1,000
//! patient records in it): the first apply takes it over with its data (every record read back
//! through redisctl's users and CA). A Redis started by hand elsewhere (not in the data
//! directory, not a cluster member) is a blocker the plan names.

mod common;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, InstanceType, IpPermission, IpRange, ResourceType,
    Tag, TagSpecification, VolumeType,
};
use common::{Cluster, text};
use redisctl_sandbox::testing::Sandbox;

fn name_tag(kind: ResourceType, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .tags(Tag::builder().key("Name").value(name).build())
        .tags(Tag::builder().key("project").value("redis-lab").build())
        .build()
}

/// The reference procedure's network and instances, by hand: `addresses` are the nodes'
/// private IPs (1a, 1b, 1c), `public_key` the key pair `prod-redis-key` they boot with.
async fn build_by_hand(public_key: &str, addresses: [&str; 3]) -> Vec<String> {
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ec2 = Client::new(&conf);
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .tag_specifications(name_tag(ResourceType::Vpc, "redis-vpc"))
        .send()
        .await
        .unwrap()
        .vpc
        .unwrap()
        .vpc_id
        .unwrap();
    let mut subnets = Vec::new();
    for (k, az) in ["a", "b", "c"].iter().enumerate() {
        let id = common::settle::until_found("CreateSubnet", || {
            ec2.create_subnet()
                .vpc_id(&vpc)
                .cidr_block(format!("10.0.{}.0/24", k + 1))
                .availability_zone(format!("us-east-1{az}"))
                .tag_specifications(name_tag(
                    ResourceType::Subnet,
                    &format!("redis-subnet-1{az}"),
                ))
                .send()
        })
        .await
        .subnet
        .unwrap()
        .subnet_id
        .unwrap();
        subnets.push(id);
    }
    let igw = ec2
        .create_internet_gateway()
        .tag_specifications(name_tag(ResourceType::InternetGateway, "redis-igw"))
        .send()
        .await
        .unwrap()
        .internet_gateway
        .unwrap()
        .internet_gateway_id
        .unwrap();
    common::settle::until_found("AttachInternetGateway", || {
        ec2.attach_internet_gateway()
            .internet_gateway_id(&igw)
            .vpc_id(&vpc)
            .send()
    })
    .await;
    let rt = common::settle::until_found("CreateRouteTable", || {
        ec2.create_route_table()
            .vpc_id(&vpc)
            .tag_specifications(name_tag(ResourceType::RouteTable, "redis-public-rt"))
            .send()
    })
    .await
    .route_table
    .unwrap()
    .route_table_id
    .unwrap();
    common::settle::until_found("CreateRoute", || {
        ec2.create_route()
            .route_table_id(&rt)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(&igw)
            .send()
    })
    .await;
    for s in &subnets {
        common::settle::until_found("AssociateRouteTable", || {
            ec2.associate_route_table()
                .route_table_id(&rt)
                .subnet_id(s)
                .send()
        })
        .await;
    }
    let sg = common::settle::until_found("CreateSecurityGroup", || {
        ec2.create_security_group()
            .vpc_id(&vpc)
            .group_name("redis-cluster-sg")
            .description("Redis cluster")
            .tag_specifications(name_tag(ResourceType::SecurityGroup, "redis-cluster-sg"))
            .send()
    })
    .await
    .group_id
    .unwrap();
    let rule = |from: i32, to: i32, cidr: &str| {
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(from)
            .to_port(to)
            .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
            .build()
    };
    common::settle::until_found("AuthorizeSecurityGroupIngress", || {
        ec2.authorize_security_group_ingress()
            .group_id(&sg)
            .ip_permissions(rule(22, 22, &common::vpc::operator_cidr()))
            .ip_permissions(rule(6379, 6379, "10.0.0.0/16"))
            .ip_permissions(rule(16379, 16379, "10.0.0.0/16"))
            .ip_permissions(rule(26379, 26381, "10.0.0.0/16"))
            .send()
    })
    .await;
    ec2.import_key_pair()
        .key_name("prod-redis-key")
        .public_key_material(aws_sdk_ec2::primitives::Blob::new(public_key))
        .send()
        .await
        .unwrap();
    let ami = common::ami::noble_ami(&ec2).await;
    let mut instances = Vec::new();
    for (k, az) in ["a", "b", "c"].iter().enumerate() {
        let out = common::settle::until_found("RunInstances", || {
            ec2.run_instances()
                .image_id(&ami)
                .instance_type(InstanceType::T2Micro)
                .min_count(1)
                .max_count(1)
                .key_name("prod-redis-key")
                .network_interfaces(
                    aws_sdk_ec2::types::InstanceNetworkInterfaceSpecification::builder()
                        .device_index(0)
                        .subnet_id(&subnets[k])
                        .private_ip_address(addresses[k])
                        .associate_public_ip_address(true)
                        .groups(&sg)
                        .build(),
                )
                .block_device_mappings(
                    BlockDeviceMapping::builder()
                        .device_name("/dev/sda1")
                        .ebs(
                            EbsBlockDevice::builder()
                                .volume_size(8)
                                .volume_type(VolumeType::Gp3)
                                .delete_on_termination(true)
                                .build(),
                        )
                        .build(),
                )
                .tag_specifications(name_tag(
                    ResourceType::Instance,
                    &format!("redis-node-1{az}"),
                ))
                .send()
        })
        .await;
        instances.push(out.instances.unwrap()[0].instance_id.clone().unwrap());
    }
    // As the procedure does: on to the next phase once every instance runs.
    let start = std::time::Instant::now();
    loop {
        let out = ec2
            .describe_instances()
            .set_instance_ids(Some(instances.clone()))
            .send()
            .await;
        let running = out.as_ref().is_ok_and(|o| {
            o.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running"))
                .count()
                == instances.len()
        });
        if running {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(180),
            "the hand-built instances are not all running after 180 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    instances
}

/// The reference procedure's phases 3 to 7 on the hand-built nodes, as an operator types them
/// (over SSH, with sudo): Redis from the distribution with its stock service stopped, a CA and
/// one server certificate made on the first node and copied to the others (the CA key with
/// them), users.acl with plaintext passwords, redis-cluster.conf, `redis-server
/// /etc/redis/redis-cluster.conf &` as root, `redis-cli --cluster create`; then `KEYS` patient
/// records written through the cluster. (RSA 2048 rather than the procedure's 4096: the same
/// files, a shorter test.)
fn redis_by_hand(c: &Cluster, ips: [&str; 3]) {
    let install = "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq redis-server >/dev/null 2>&1 && systemctl stop redis-server && systemctl disable redis-server 2>/dev/null; redis-server --version";
    let certs = "mkdir -p /home/ubuntu/redis-certs && cd /home/ubuntu/redis-certs && \
        openssl genrsa -out ca-key.pem 2048 2>/dev/null && \
        openssl req -new -x509 -days 365 -key ca-key.pem -out ca-cert.pem -subj /C=US/ST=NY/L=NYC/O=NYP-Redis/CN=RedisCA && \
        openssl genrsa -out redis-server-key.pem 2048 2>/dev/null && \
        openssl req -new -key redis-server-key.pem -out redis-server.csr -subj /C=US/ST=NY/L=NYC/O=NYP-Redis/CN=redis-cluster && \
        openssl x509 -req -days 365 -in redis-server.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -out redis-server-cert.pem 2>/dev/null && \
        chmod 600 *.pem && chmod 644 ca-cert.pem redis-server-cert.pem && \
        tar czf - ca-cert.pem ca-key.pem redis-server-cert.pem redis-server-key.pem | base64 -w0";
    let acl = "user app_user on >AppPassword123! ~session:* ~patient:* +get +set +hget +hset +expire +ttl\n\
               user dev_user on >DevPassword123! ~* +get +hget +keys +info +cluster\n\
               user admin_user on >AdminPassword123! ~* +@all\n\
               user default off\n";
    let mut tarball = String::new();
    for (k, ip) in ips.iter().enumerate() {
        let version = c.on_node(ip, install, "");
        assert!(version.contains("v=7."), "{ip}: {version}");
        if k == 0 {
            tarball = c.on_node(ips[0], certs, "").trim().to_string();
        } else {
            c.on_node(
                ip,
                "mkdir -p /home/ubuntu/redis-certs && cd /home/ubuntu/redis-certs && base64 -d | tar xzf -",
                &tarball,
            );
        }
        c.on_node(
            ip,
            "cat > /etc/redis/users.acl && chmod 640 /etc/redis/users.acl && chown redis:redis /etc/redis/users.acl",
            acl,
        );
        let conf = format!(
            "port 0\ntls-port 6379\nbind {ip} 127.0.0.1\n\
             cluster-enabled yes\ncluster-config-file nodes-6379.conf\ncluster-node-timeout 5000\n\
             tls-cert-file /home/ubuntu/redis-certs/redis-server-cert.pem\n\
             tls-key-file /home/ubuntu/redis-certs/redis-server-key.pem\n\
             tls-ca-cert-file /home/ubuntu/redis-certs/ca-cert.pem\n\
             tls-cluster yes\ntls-replication yes\ntls-protocols \"TLSv1.2 TLSv1.3\"\n\
             protected-mode yes\naclfile /etc/redis/users.acl\n\
             appendonly yes\ndir /var/lib/redis\n\
             loglevel notice\nlogfile /var/log/redis/redis-cluster.log\n"
        );
        c.on_node(ip, "cat > /etc/redis/redis-cluster.conf", &conf);
        // `sudo redis-server /etc/redis/redis-cluster.conf &`, from the login shell.
        c.on_node(
            ip,
            "mkdir -p /var/lib/redis /var/log/redis && chown -R redis:redis /var/lib/redis /var/log/redis && \
             (setsid nohup redis-server /etc/redis/redis-cluster.conf </dev/null >/dev/null 2>&1 &) && sleep 1",
            "",
        );
    }
    let hand_cli = "redis-cli --tls --cert /home/ubuntu/redis-certs/redis-server-cert.pem --key /home/ubuntu/redis-certs/redis-server-key.pem --cacert /home/ubuntu/redis-certs/ca-cert.pem --user admin_user --pass AdminPassword123! --no-auth-warning";
    let addresses: Vec<String> = ips.iter().map(|ip| format!("{ip}:6379")).collect();
    let created = c.on_node(
        ips[0],
        &format!(
            "{hand_cli} --cluster create {} --cluster-replicas 0 --cluster-yes 2>&1",
            addresses.join(" ")
        ),
        "",
    );
    assert!(
        created.contains("[OK] All 16384 slots covered."),
        "{created}"
    );
    common::eventually("the hand-built cluster to say cluster_state:ok", || {
        c.on_node(
            ips[0],
            &format!("{hand_cli} -h {} CLUSTER INFO", ips[0]),
            "",
        )
        .contains("cluster_state:ok")
    });
    let sets: String = (1..=KEYS)
        .map(|i| format!("SET patient:{i} record-{i}\n"))
        .collect();
    let out = c.on_node(ips[0], &format!("{hand_cli} -c -h {}", ips[0]), &sets);
    assert_eq!(out.matches("OK").count(), KEYS, "{out}");
}

/// Patient records the hand-built cluster holds.
const KEYS: usize = 1000;

/// The ids of the resources that carry the cluster's tag, of every kind adopt tags.
async fn tagged() -> Vec<String> {
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ec2 = Client::new(&conf);
    let out = ec2
        .describe_tags()
        .filters(
            Filter::builder()
                .name("key")
                .values("redisctl:cluster")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut ids: Vec<String> = out
        .tags()
        .iter()
        .filter_map(|t| t.resource_id().map(String::from))
        .collect();
    ids.sort();
    ids
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The addresses a plan says it creates or replaces.
fn created_or_replaced(plan: &str) -> Vec<String> {
    plan.lines()
        .filter_map(|l| {
            let l = l.trim().strip_prefix("# ")?;
            let (address, rest) = l.split_once(' ')?;
            (rest.starts_with("will be created") || rest.contains("replaced"))
                .then(|| address.to_string())
        })
        .collect()
}

/// Nothing of the hand build is created again or replaced by `plan_text`.
fn assert_nothing_made_again(plan_text: &str) {
    let made = created_or_replaced(plan_text);
    for address in [
        "vpc",
        "subnet.redis-subnet-1a",
        "subnet.redis-subnet-1b",
        "subnet.redis-subnet-1c",
        "igw",
        "route_table",
        "sg",
        "node.redis-node-1a",
        "node.redis-node-1b",
        "node.redis-node-1c",
    ] {
        assert!(
            !made.iter().any(|a| a == address),
            "{address} would be made again: {made:?}\n{plan_text}"
        );
    }
}

#[test]
fn a_vpc_built_by_hand_is_adopted_and_one_apply_makes_it_the_cluster() {
    let _sb = Sandbox::acquire();
    let before = common::account::now();
    let c = Cluster::new("adopt", |t| t);
    let key = c.state_dir().join("ssh_ed25519");
    let public = redisctl::ssh::keyfile::ensure(&key, "redisctl prod-redis").unwrap();
    // DHCP chose 10.0.1.57 for the first node.
    let ips = ["10.0.1.57", "10.0.2.10", "10.0.3.10"];
    let instances = block(build_by_hand(&public, ips));
    redis_by_hand(&c, ips);

    // The spec says 10.0.1.10: refused, the line to write named, nothing tagged.
    let out = c.run(&["adopt", "--vpc", "redis-vpc", "--yes"]);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(
            "write `private_ip = \"10.0.1.57\"` in the [[nodes.node]] entry named redis-node-1a"
        ),
        "{said}"
    );
    assert!(said.contains("nothing was tagged"), "{said}");
    assert_eq!(block(tagged()), Vec::<String>::new());

    c.edit(|t| t.replace("private_ip = \"10.0.1.10\"", "private_ip = \"10.0.1.57\""));
    // No terminal and no --yes: the report and the plan, then a refusal; nothing tagged.
    let out = c.run(&["adopt", "--vpc", "redis-vpc"]);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("no terminal to confirm on"), "{said}");
    assert!(
        said.contains("Once they are tagged, the first `redisctl apply` will do this"),
        "{said}"
    );
    assert_nothing_made_again(&said);
    // The hand-started Redis on each node is taken over with its data, all stopped before any
    // starts under redisctl; the cluster is waited on, not created.
    for node in ["redis-node-1a", "redis-node-1b", "redis-node-1c"] {
        assert!(
            said.contains(&format!("node.{node}.takeover will be updated in place")),
            "{node}: {said}"
        );
    }
    assert!(
        said.contains("3 nodes are taken over from a Redis started by hand"),
        "{said}"
    );
    assert!(
        !said.contains("# cluster will be"),
        "the cluster would be created: {said}"
    );
    assert!(
        said.contains("the nodes start from their cluster state files"),
        "{said}"
    );
    assert_eq!(block(tagged()), Vec::<String>::new());

    let adopted = c.ok(&["adopt", "--vpc", "redis-vpc", "--yes"]);
    eprintln!("{adopted}");
    assert!(
        adopted.contains("Adopted: 13 resources tagged as cluster prod-redis's"),
        "{adopted}"
    );
    assert!(
        adopted.contains("Name redis-node-1a → prod-redis-redis-node-1a"),
        "{adopted}"
    );
    let now_tagged = block(tagged());
    for id in &instances {
        assert!(now_tagged.contains(id), "{id} not tagged: {now_tagged:?}");
    }
    assert_eq!(now_tagged.len(), 13, "{now_tagged:?}");
    // Adopting again by the VPC's id: the same resources, nothing new; by its old Name: it
    // has the cluster's Name now, and the cluster has resources, so it is refused.
    let vpc_id = now_tagged.iter().find(|id| id.starts_with("vpc-")).unwrap();
    let again = c.run(&["adopt", "--vpc", vpc_id, "--yes"]);
    assert!(
        again.status.success(),
        "{}{}",
        text(&again.stdout),
        text(&again.stderr)
    );
    let old_name = c.run(&["adopt", "--vpc", "redis-vpc", "--yes"]);
    let said = format!("{}{}", text(&old_name.stdout), text(&old_name.stderr));
    assert!(!old_name.status.success(), "{said}");
    assert!(
        said.contains("cluster prod-redis already has resources in AWS"),
        "{said}"
    );

    assert_nothing_made_again(&c.ok(&["plan"]));
    let t = std::time::Instant::now();
    c.setup();
    eprintln!(
        "the first apply after adopt: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    c.ok(&["verify"]);
    assert_eq!(c.plan_exit(), 0, "a second plan is empty");
    // The hand build's records, every one, read through the cluster as redisctl's admin; no
    // hand-started server left, Redis runs as redis under systemd.
    // (verify's own probe keys expire by themselves: only the patient records are counted.)
    let total: usize = ips
        .iter()
        .map(|ip| {
            c.redis(ip, "--scan --pattern \"patient:*\"")
                .lines()
                .filter(|l| l.starts_with("patient:"))
                .count()
        })
        .sum();
    assert_eq!(total, KEYS);
    let gets: String = (1..=KEYS).map(|i| format!("GET patient:{i}\n")).collect();
    let read = c.on_node(
        ips[0],
        "IFS= read -r pw; REDISCLI_AUTH=\"$pw\" redis-cli -c --tls --cacert /etc/redis/tls/ca.crt --cert /etc/redis/tls/redis.crt --key /etc/redis/tls/redis.key -h 127.0.0.1 -p 6379 --user admin --no-auth-warning",
        &format!("{}\n{gets}", common::ADMIN_PW),
    );
    let want: Vec<String> = (1..=KEYS).map(|i| format!("record-{i}")).collect();
    let got: Vec<&str> = read
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-> Redirected"))
        .collect();
    let wrong = want.iter().zip(&got).filter(|(w, g)| w != g).count();
    assert!(
        got.len() == KEYS && wrong == 0,
        "{} answers, {wrong} not the record written by hand",
        got.len()
    );
    for ip in ips {
        let ps = c.on_node(ip, "ps -C redis-server -o user=,args=", "");
        assert_eq!(ps.lines().count(), 1, "{ip}: {ps}");
        assert!(ps.starts_with("redis "), "{ip}: {ps}");
    }

    // A Redis started by hand next to redisctl's, the reference procedure's way: the plan
    // stops at it, naming it; once it is gone the plan is empty again.
    let started = c.on_node(
        "10.0.2.10",
        "cd /tmp && redis-server --port 7777 --bind 127.0.0.1 --save '' --pidfile /tmp/hand.pid --daemonize yes && sleep 1 && cat /tmp/hand.pid",
        "",
    );
    let pid: u32 = started
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{started}"));
    let out = c.run(&["plan"]);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "a redis-server runs on the node outside redisctl's unit redis-server@cluster.service (pid {pid} as root, data in /tmp)"
        )),
        "{said}"
    );
    c.on_node("10.0.2.10", &format!("kill {pid}"), "");
    common::eventually("the hand-started Redis to be gone", || c.plan_exit() == 0);
    c.ok(&["destroy", "--yes"]);
    // The key pair the instances were launched with was the operator's, not redisctl's: kept.
    common::account::assert_as_before(&before, "prod-redis", &["key-pair prod-redis-key"]);
}

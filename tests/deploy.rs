//! The files in deploy/ are checked by running them for real: the single-node configuration,
//! and a three-node cluster on loopback ports with the stream replicated three times. Every
//! client authenticates with its own identity (deploy/accounts.conf), and the cluster's
//! routes with the route credentials.

#![allow(clippy::unwrap_used)]

use carewoven_commands::Config;
use carewoven_testkit::broker::{ClusterPorts, Identities, single_node};
use carewoven_testkit::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_node_configuration_serves_the_command_api() {
    let ids = Identities::new();
    let nats = single_node(&ids).unwrap();
    let mut config = Config::for_nats(nats.url());
    config.service.nats_nkey_seed = Some(ids.seed("commands"));
    let service = start_commands(config).await.unwrap();
    let mut client = service.client();
    register_standard_orgs(&mut client).await.unwrap();
    let person = register(&mut client, 40).await.unwrap();
    assert!(!person.is_empty());
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_replicates_the_log() {
    let ids = Identities::new();
    let ports = ClusterPorts::new().unwrap();
    let env = ports.env(&ids, "carewoven-route", "a-route-secret-for-tests");
    let nodes: Vec<_> = (1..=3).map(|n| ports.start(n, &env).unwrap()).collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    assert!(
        async_nats::connect(urls[0].as_str()).await.is_err(),
        "an anonymous client got in"
    );
    let mut config = Config::for_nats(urls.join(","));
    config.service.replicas = 3;
    config.service.nats_nkey_seed = Some(ids.seed("commands"));
    // The cluster elects its JetStream meta leader after start; the service retries opening
    // the stream until it can.
    let service = start_commands(config).await.unwrap();
    let mut client = service.client();
    register_standard_orgs(&mut client).await.unwrap();
    // The operator reads the stream's state on another node.
    let ops = ids.connect("ops", &urls[1]).await.unwrap();
    let js = ops.jetstream();
    let mut stream = js.get_stream("CAREWOVEN").await.unwrap();
    let registry = stream.info().await.unwrap().state.messages;
    let person = register(&mut client, 41).await.unwrap();
    let referral = make_referral(&mut client, &person).await.unwrap();
    assert!(!referral.is_empty());

    let info = stream.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    let cluster = info.cluster.clone().unwrap();
    assert_eq!(
        cluster.replicas.len() + 1,
        3,
        "a leader and two replicas: {cluster:?}"
    );
    assert_eq!(
        info.state.messages,
        registry + 2,
        "two events after the registry's"
    );
    service.stop().await.unwrap();
}

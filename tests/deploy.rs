//! The files in deploy/ are checked by running them for real: the single-node configuration,
//! and a three-node cluster on loopback ports with the stream replicated three times.

#![allow(clippy::unwrap_used)]

use carewoven_commands::Config;
use carewoven_testkit::{ConfiguredServer, free_port, repo_root};
use carewoven_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_single_node_configuration_serves_the_command_api() {
    let port = free_port().unwrap();
    let nats = ConfiguredServer::start(
        &repo_root().join("deploy/nats-server.conf"),
        &[("CAREWOVEN_NATS_PORT".into(), port.to_string())],
        port,
    )
    .unwrap();
    let service = Service::start(Config::for_nats(nats.url())).await.unwrap();
    let mut client = service.client().await.unwrap();
    register_standard_orgs(&mut client).await.unwrap();
    let person = register(&mut client, 40).await.unwrap();
    assert!(!person.is_empty());
    service.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_replicates_the_log() {
    let clients: Vec<u16> = (0..3).map(|_| free_port().unwrap()).collect();
    let routes: Vec<u16> = (0..3).map(|_| free_port().unwrap()).collect();
    let mut env = Vec::new();
    for i in 0..3 {
        env.push((
            format!("CAREWOVEN_NATS_PORT_{}", i + 1),
            clients[i].to_string(),
        ));
        env.push((
            format!("CAREWOVEN_NATS_ROUTE_PORT_{}", i + 1),
            routes[i].to_string(),
        ));
        env.push((
            format!("CAREWOVEN_NATS_ROUTE_{}", i + 1),
            format!("nats-route://127.0.0.1:{}", routes[i]),
        ));
    }
    let nodes: Vec<ConfiguredServer> = (0..3)
        .map(|i| {
            ConfiguredServer::start(
                &repo_root().join(format!("deploy/cluster/n{}.conf", i + 1)),
                &env,
                clients[i],
            )
            .unwrap()
        })
        .collect();
    let urls: Vec<String> = nodes.iter().map(ConfiguredServer::url).collect();
    let mut config = Config::for_nats(urls.join(","));
    config.replicas = 3;
    // The cluster elects its JetStream meta leader after start; the service retries opening
    // the stream until it can.
    let service = Service::start(config).await.unwrap();
    let mut client = service.client().await.unwrap();
    register_standard_orgs(&mut client).await.unwrap();
    let nc = async_nats::connect(urls[1].as_str()).await.unwrap();
    let js = async_nats::jetstream::new(nc);
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

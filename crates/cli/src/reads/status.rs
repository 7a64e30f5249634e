//! `carectl status`: the health of each service (grpc.health.v1) and how far the views have
//! applied the log (ViewsAdmin.Status, governance role: minted with it from --issuer-dir).
//! Exit 0 when every service is serving and the views answered; a refusal exits with its
//! code; a service not serving, 3.

use std::process::ExitCode;

use carewoven_governance::Role;
use carewoven_proto::v1::{self, views_admin_client::ViewsAdminClient};
use serde_json::{Value, json};
use tonic_health::pb::health_check_response::ServingStatus;

use super::show::{fields, table_of};
use super::{Failure, Reader, json};
use crate::{health, output};

pub async fn run(r: &Reader) -> Result<ExitCode, Failure> {
    let g = &r.global;
    let services = [
        ("commands", g.server.as_str(), "carewoven.v1.CommandService"),
        (
            "views",
            g.views_server.as_str(),
            "carewoven.v1.QueryService",
        ),
        (
            "gateway",
            g.gateway_server.as_str(),
            "carewoven.v1.FeedService",
        ),
    ];
    let mut healthy = true;
    let mut health_rows = Vec::new();
    for (name, address, grpc) in services {
        let state = match health::check(address, grpc, r.timeout).await {
            Ok(status) => {
                healthy &= status == ServingStatus::Serving;
                status.as_str_name().to_owned()
            }
            Err(why) => {
                healthy = false;
                why
            }
        };
        health_rows.push((name, address, grpc, state));
    }
    let views = match r.views().await {
        Ok(channel) => {
            let request = r.request(v1::ViewsStatusRequest {}, &[Role::Governance])?;
            ViewsAdminClient::new(channel)
                .status(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(Failure::Status)
        }
        Err(e) => Err(e),
    };
    if r.json() {
        let services: Vec<Value> = health_rows
            .iter()
            .map(|(name, address, grpc, state)| {
                json!({"name": name, "address": address, "grpc_service": grpc, "health": state})
            })
            .collect();
        let views = match &views {
            Ok(s) => {
                let mut v = json::value(s).map_err(Failure::Client)?;
                v["lag"] = json!(s.log_last_sequence.saturating_sub(s.log_position));
                v
            }
            Err(Failure::Status(status)) => json!({"error": output::status_json(status)}),
            Err(Failure::Unreachable(e) | Failure::Client(e)) => {
                json!({"error": {"code": "CLIENT", "message": format!("{e:#}")}})
            }
        };
        println!(
            "{}",
            json!({"services": services, "views": views, "healthy": healthy})
        );
    } else {
        let headers = ["Service", "Address", "gRPC service", "Health"];
        let t = table_of(&headers, &health_rows, |(name, address, grpc, state)| {
            vec![
                (*name).to_owned(),
                (*address).to_owned(),
                (*grpc).to_owned(),
                state.clone(),
            ]
        });
        println!("{t}");
        if let Ok(s) = &views {
            println!("\nViews");
            println!(
                "{}",
                fields(&[
                    ("applied log position", s.log_position.to_string()),
                    ("log last sequence", s.log_last_sequence.to_string()),
                    (
                        "lag (events)",
                        s.log_last_sequence
                            .saturating_sub(s.log_position)
                            .to_string()
                    ),
                    ("skipped events", s.skipped_events.to_string()),
                    ("file", s.file.clone()),
                ])
            );
        }
    }
    match views {
        // With --json the failure is already in the document: only the exit code says it.
        Err(Failure::Status(status)) if r.json() => {
            Ok(ExitCode::from(output::exit_code(status.code())))
        }
        Err(Failure::Unreachable(_)) if r.json() => Ok(ExitCode::from(crate::UNREACHABLE)),
        Err(Failure::Client(_)) if r.json() => Ok(ExitCode::FAILURE),
        Err(e) => Err(e),
        Ok(_) if !healthy => Ok(ExitCode::from(crate::UNREACHABLE)),
        Ok(_) => Ok(ExitCode::SUCCESS),
    }
}

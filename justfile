# Carewoven development recipes. On a fresh machine use ./dev, which installs the pinned
# tools first: `./dev up`, `./dev verify`.

set shell := ["bash", "-euo", "pipefail", "-c"]

export CAREWOVEN_NATS_SERVER := justfile_directory() / ".tools/venv/bin/nats-server"
run := justfile_directory() / ".run"
nats_port := env_var_or_default("CAREWOVEN_NATS_PORT", "4222")
grpc_addr := env_var_or_default("CAREWOVEN_COMMANDS_LISTEN", "127.0.0.1:50051")
views_addr := env_var_or_default("CAREWOVEN_VIEWS_LISTEN", "127.0.0.1:50052")
gateway_addr := env_var_or_default("CAREWOVEN_GATEWAY_LISTEN", "127.0.0.1:50053")
fhir_addr := env_var_or_default("CAREWOVEN_VIEWS_FHIR_LISTEN", "127.0.0.1:50054")
web_addr := env_var_or_default("CAREWOVEN_VIEWS_WEB_LISTEN", "127.0.0.1:50055")
# Prometheus metrics (`/metrics`) of each service, for operators.
commands_metrics := env_var_or_default("CAREWOVEN_COMMANDS_METRICS", "127.0.0.1:9151")
views_metrics := env_var_or_default("CAREWOVEN_VIEWS_METRICS", "127.0.0.1:9152")
gateway_metrics := env_var_or_default("CAREWOVEN_GATEWAY_METRICS", "127.0.0.1:9153")

default:
    @just --list

# Formatting and clippy with warnings as errors
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# The whole default test suite (starts its own nats-servers)
test:
    cargo test --workspace --locked

# Lint, then the whole test suite: what CI runs
verify: lint test

# Start NATS, the command and views services in the background and load the demo. Every
# call is authenticated: a development token issuer is made once into .run/issuer, the
# services trust it (CAREWOVEN_TRUSTED_KEYS) and carectl mints tokens from it
# (CAREWOVEN_ISSUER_DIR). Development only: never trust that issuer in production. NATS
# admits only the identities of deploy/accounts.conf: an nkey pair per service is made once
# into .run/nats-keys (carectl keys nats); the server gets the public keys, each service its
# own seed.
up: build
    #!/usr/bin/env bash
    set -euo pipefail
    mkdir -p {{run}}/nats
    if [ -f {{run}}/nats.pid ] && kill -0 "$(cat {{run}}/nats.pid)" 2>/dev/null; then
      echo "already running; ./dev down first"; exit 1
    fi
    # Secrets made once per machine and kept out of the repository: the id-derivation key,
    # the page-token key and the development token issuer.
    [ -s {{run}}/person-id-key ] || python3 -c 'import secrets; print(secrets.token_hex(32))' > {{run}}/person-id-key
    [ -s {{run}}/page-token-key ] || python3 -c 'import secrets; print(secrets.token_hex(32))' > {{run}}/page-token-key
    [ -s {{run}}/cursor-key ] || python3 -c 'import secrets; print(secrets.token_hex(32))' > {{run}}/cursor-key
    [ -s {{run}}/issuer/trusted-keys.json ] || target/release/carectl keys generate --out {{run}}/issuer
    # NATS identities: existing seeds are kept, missing ones made.
    target/release/carectl keys nats --out {{run}}/nats-keys > /dev/null
    set -a; . {{run}}/nats-keys/public-keys.env; set +a
    # A store from before identities kept the streams in NATS's default account, where no
    # one can reach them now: set it (and the views built from it) aside and start afresh.
    if [ -d "{{run}}/nats/jetstream/\$G" ]; then
      old={{run}}/anonymous-$(date +%Y%m%d%H%M%S)
      mkdir -p "$old" && mv {{run}}/nats "$old"/ && mkdir -p {{run}}/nats
      if [ -f {{run}}/views.redb ]; then mv {{run}}/views.redb "$old"/; fi
      echo "moved the store of an unauthenticated NATS to $old; the demo is loaded afresh"
    fi
    # A development citizen identity provider too (people, and carers as their proxies):
    # trusted for citizens only. carectl --issuer-dir .run/citizen-issuer token --citizen ...
    [ -s {{run}}/citizen-issuer/trusted-keys.json ] || target/release/carectl keys generate --citizens --out {{run}}/citizen-issuer
    target/release/carectl keys trust --into {{run}}/issuer/trusted-keys.json {{run}}/citizen-issuer/trusted-keys.json > /dev/null
    export CAREWOVEN_TRUSTED_KEYS={{run}}/issuer/trusted-keys.json
    export CAREWOVEN_NATS_URL=nats://127.0.0.1:{{nats_port}}
    CAREWOVEN_NATS_PORT={{nats_port}} CAREWOVEN_NATS_STORE={{run}}/nats \
      "$CAREWOVEN_NATS_SERVER" -c deploy/nats-server.conf > {{run}}/nats.log 2>&1 & echo $! > {{run}}/nats.pid
    # Each service's access index keeps its fold in a checkpoint file, so a restart costs
    # the events since the last save (delete a file to rebuild it from the log).
    CAREWOVEN_COMMANDS_LISTEN={{grpc_addr}} CAREWOVEN_PERSON_ID_KEY="$(cat {{run}}/person-id-key)" \
      CAREWOVEN_NATS_NKEY_SEED="$(cat {{run}}/nats-keys/commands.nk)" \
      CAREWOVEN_ACCESS_CHECKPOINT={{run}}/commands-access.redb \
      CAREWOVEN_METRICS_LISTEN={{commands_metrics}} \
      target/release/carewoven-commands > {{run}}/commands.log 2>&1 & echo $! > {{run}}/commands.pid
    # The command service creates the event stream the other services follow.
    target/release/carectl --server http://{{grpc_addr}} wait-ready --timeout-secs 30
    # The views are derived: a file this build cannot read (an older format) is rebuilt.
    if [ -f {{run}}/views.redb ] && ! target/release/carewoven-views digest {{run}}/views.redb > /dev/null 2>&1; then
      rm {{run}}/views.redb && echo "the views file was of another format; it is rebuilt from the log"
    fi
    CAREWOVEN_PAGE_TOKEN_KEY="$(cat {{run}}/page-token-key)" \
      CAREWOVEN_NATS_NKEY_SEED="$(cat {{run}}/nats-keys/views.nk)" \
      CAREWOVEN_ACCESS_CHECKPOINT={{run}}/views-access.redb \
      CAREWOVEN_METRICS_LISTEN={{views_metrics}} \
      target/release/carewoven-views serve --listen {{views_addr}} --file {{run}}/views.redb \
      --fhir-listen {{fhir_addr}} --fhir-audit-server http://{{gateway_addr}} \
      --web-listen {{web_addr}} --web-audit-server http://{{gateway_addr}} \
      --web-commands-server http://{{grpc_addr}} > {{run}}/views.log 2>&1 & echo $! > {{run}}/views.pid
    # The partner-feed gateway: per-partner feeds on cw.feed.<ORG>.> and FeedService; FHIR
    # rest-hook notifications to the endpoints in .run/rest-hooks.json ({"ORG": "http://..."}), if any.
    CAREWOVEN_GATEWAY_LISTEN={{gateway_addr}} CAREWOVEN_CURSOR_KEY="$(cat {{run}}/cursor-key)" \
      CAREWOVEN_NATS_NKEY_SEED="$(cat {{run}}/nats-keys/gateway.nk)" \
      CAREWOVEN_ACCESS_CHECKPOINT={{run}}/gateway-access.redb \
      CAREWOVEN_GATEWAY_CHECKPOINT={{run}}/gateway-evaluator.redb \
      CAREWOVEN_METRICS_LISTEN={{gateway_metrics}} \
      CAREWOVEN_REST_HOOK_STATE={{run}}/gateway-rest-hooks.redb CAREWOVEN_FHIR_BASE_URL=http://{{fhir_addr}}/fhir \
      target/release/carewoven-gateway $(test -f {{run}}/rest-hooks.json && echo --rest-hooks {{run}}/rest-hooks.json) \
      > {{run}}/gateway.log 2>&1 & echo $! > {{run}}/gateway.pid
    CAREWOVEN_ISSUER_DIR={{run}}/issuer target/release/carectl --server http://{{grpc_addr}} demo
    # The web screens' sign-in link: the demo hospital's discharge coordinator, for 12 hours.
    # The token is in the fragment (after #), which the browser never sends to the server.
    web_token="$(target/release/carectl --issuer-dir {{run}}/issuer --org DEMO-HOSP token --ttl-secs 43200)"
    echo
    echo "Web screens (D2A board, records, inbox, caseload), signed in as DEMO-HOSP's discharge"
    echo "coordinator for 12 hours: http://{{web_addr}}/#token=$web_token"
    echo
    echo "Carewoven is running: NATS on 127.0.0.1:{{nats_port}}, commands on {{grpc_addr}},"
    echo "views (queries) on {{views_addr}} (FHIR R4 on http://{{fhir_addr}}/fhir), partner feeds"
    echo "on {{gateway_addr}}. Logs in .run/."
    echo "Metrics: curl http://{{commands_metrics}}/metrics (views {{views_metrics}}, gateway {{gateway_metrics}})."
    echo "NATS admits only the identities in .run/nats-keys (deploy/README.md, Identities)."
    echo "Every call needs a bearer token;"
    echo "in development carectl mints them: export CAREWOVEN_ISSUER_DIR={{run}}/issuer, then"
    echo "target/release/carectl --help (--org picks the organisation). For other tools:"
    echo "grpcurl -plaintext -H \"authorization: Bearer \$(target/release/carectl --issuer-dir"
    echo "{{run}}/issuer --org DEMO-HOSP token)\" {{views_addr}} list. Stop: ./dev down"
    echo "A person's own token: target/release/carectl --issuer-dir {{run}}/citizen-issuer token"
    echo "--citizen --nhs-number <their NHS number> --identity-level P9"

# Stop what `up` started
down:
    #!/usr/bin/env bash
    # Services before NATS; a name without a pid file was not started.
    for p in gateway views commands nats; do
      if [ -f {{run}}/$p.pid ]; then kill "$(cat {{run}}/$p.pid)" 2>/dev/null || true; rm -f {{run}}/$p.pid; fi
    done
    echo stopped

# Release build of the binaries
build:
    cargo build --release --locked -p carewoven-commands -p carewoven-cli -p carewoven-views -p carewoven-gateway -p carewoven-admin

# Stops nothing: for a backup of one moment stop the services first, keeping NATS.
# deploy/README.md, "Backup and restore".
# Back up the development NATS (`up`) into DIR as the backup identity, then verify it
backup DIR:
    cargo build --release --locked -p carewoven-admin
    CAREWOVEN_NATS_URL=nats://127.0.0.1:{{nats_port}} CAREWOVEN_NATS_NKEY_SEED="$(cat {{run}}/nats-keys/backup.nk)" \
      target/release/carewoven-admin backup --out {{DIR}}
    target/release/carewoven-admin verify {{DIR}}

# The server must not have the streams: a fresh store, before the services start.
# Restore the backup in DIR onto the development NATS as the backup identity
restore DIR:
    cargo build --release --locked -p carewoven-admin
    CAREWOVEN_NATS_URL=nats://127.0.0.1:{{nats_port}} CAREWOVEN_NATS_NKEY_SEED="$(cat {{run}}/nats-keys/backup.nk)" \
      target/release/carewoven-admin restore --from {{DIR}}

# Append benchmark: raw JetStream publish vs the full command path, under both sync policies
bench-append *ARGS:
    cargo build --release --locked -p carewoven-bench
    target/release/bench-append --sync always {{ARGS}}
    target/release/bench-append --sync default {{ARGS}}

# Views benchmark: rebuild vs raw read and raw redb insert, GetCareRecord p99 vs a no-op RPC
bench-views *ARGS:
    cargo build --release --locked -p carewoven-bench
    target/release/bench-views {{ARGS}}

# Replay benchmark: 1,000,000 events, selective replay vs raw ordered consumers, Parquet RSS
bench-replay *ARGS:
    cargo build --release --locked -p carewoven-bench
    target/release/bench-replay {{ARGS}}

# Partner-feed benchmark: reply -> partner-receives latency vs raw core NATS, gateway backlog
# throughput vs a raw ordered consumer (`--sync default` for the server's default fsync)
bench-feed *ARGS:
    cargo build --release --locked -p carewoven-bench
    target/release/bench-feed {{ARGS}}

# Scale benchmark (not in `test`): 10,000,000 events about 1,000,000 people, the release
# services as child processes on their own nats-server; starts, memory, rebuild, queries,
# gateway restart. Quick run: just bench-scale --events 200000 --people 20000
bench-scale *ARGS: build
    cargo build --release --locked -p carewoven-bench --bin bench-scale
    target/release/bench-scale {{ARGS}}

# Hostile input at scale (not in `test`; a 20,000-input version is): 10,000,000 inputs
# across every decoder and parser reachable from outside, arbitrary and structure-aware,
# in the `fuzz` profile (release with overflow checks). Prints
# `fuzz: inputs=<n> panics=<n> hangs=<n> ...`; failing inputs go to target/fuzz-findings.
# One target: just fuzz --target bearer --inputs 100000 --seed 1
fuzz *ARGS:
    cargo build --profile fuzz --locked -p carewoven-fuzz
    time target/fuzz/carewoven-fuzz {{ARGS}}

# Fault-injection suite (not in `test`; a short version is, crates/bench/tests/faults.rs): a
# 3-node cluster under load (kill -9 a follower, the leader; SIGSTOP a node), kill -9 of
# nats-server, kill -9 of each service at random moments, a full disk (a loopback filesystem
# as root, else JetStream's max_file_store). Release binaries as child processes; about
# 2.5 min on 2 cores. Longer: just faults --phase-acks 1000 --rounds 30 --broker-kills 10
faults *ARGS: build
    cargo build --release --locked -p carewoven-bench --bin faults
    target/release/faults {{ARGS}}

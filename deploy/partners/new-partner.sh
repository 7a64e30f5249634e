#!/usr/bin/env bash
# Print the NATS account of one partner organisation, to append to partners.conf:
#
#   deploy/partners/new-partner.sh <ORG> <USER_PUBLIC_NKEY> >> deploy/partners/partners.conf
#
# ORG is the organisation code (ASCII letters, digits, '-', '_'); it names the account, and
# nats-partners.conf lets an account import only the feed of the organisation it is named
# after. The nkey is the partner's public user key (56 characters starting with U); the
# partner keeps the matching seed, which never comes here. See deploy/README.md
# ("Partners").
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 <ORG> <USER_PUBLIC_NKEY>" >&2
  exit 2
fi
org=$1
nkey=$2
if ! [[ $org =~ ^[A-Za-z0-9_-]+$ ]]; then
  echo "organisation code '$org': only ASCII letters, digits, '-' and '_'" >&2
  exit 2
fi
if [ "$org" = CAREWOVEN ] || [[ $org == CW_* ]]; then
  echo "'$org' is reserved for Carewoven's own accounts (CAREWOVEN, CW_...)" >&2
  exit 2
fi
if ! [[ $nkey =~ ^U[A-Z2-7]{55}$ ]]; then
  echo "'$nkey' is not a public user nkey (56 characters starting with U); never use a seed (SU...)" >&2
  exit 2
fi

cat <<CONF

# Partner $org: live feed cw.feed.$org.>; pull consumer $org on CW_FEED through the
# JetStream API of domain "carewoven" (\$JS.carewoven.API), nothing else.
"$org" {
  users: [
    {
      nkey: $nkey
      permissions: {
        publish: {
          allow: [
            "\$JS.carewoven.API.CONSUMER.INFO.CW_FEED.$org"
            "\$JS.carewoven.API.CONSUMER.MSG.NEXT.CW_FEED.$org"
            "\$JS.ACK.CW_FEED.$org.>"
          ]
        }
        subscribe: {
          allow: [ "cw.feed.$org.>", "_INBOX.>" ]
        }
      }
    }
  ]
  imports: [
    { stream: { account: CW_GATEWAY, subject: "cw.feed.$org.>" } }
    {
      service: { account: CW_PARTNER_API, subject: "consumer.info.$org" }
      to: "\$JS.carewoven.API.CONSUMER.INFO.CW_FEED.$org"
    }
    {
      service: { account: CW_PARTNER_API, subject: "consumer.next.$org" }
      to: "\$JS.carewoven.API.CONSUMER.MSG.NEXT.CW_FEED.$org"
    }
    { service: { account: CW_FEEDS, subject: "\$JS.ACK.CW_FEED.$org.>" } }
  ]
}
CONF

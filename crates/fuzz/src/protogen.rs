//! Structure-aware protobuf: a message of any `carewoven.v1` type generated field by field
//! from the descriptors the proto crate embeds (`FILE_DESCRIPTOR_SET`), with values drawn
//! mostly from what the conversions accept (UUIDs, NHS numbers in the 999 range with their
//! check digit, codes, dates, instants, the enums' own values) and sometimes from what they
//! must refuse, so generated messages reach deep into the conversions before they fail.

use std::cell::Cell;
use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, Value};

use crate::rng::Rng;

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(carewoven_proto::FILE_DESCRIPTOR_SET)
        .unwrap_or_else(|e| panic!("the embedded descriptor set decodes: {e}"))
});

/// The descriptor of `carewoven.v1.<name>`.
pub fn message(name: &str) -> MessageDescriptor {
    let full = format!("carewoven.v1.{name}");
    POOL.get_message_by_name(&full)
        .unwrap_or_else(|| panic!("{full} is in the descriptor set"))
}

/// A synthetic NHS number in the 999 range with a valid modulus-11 check digit.
pub fn nhs_number(rng: &mut Rng) -> String {
    loop {
        let body = format!("999{:06}", rng.below(1_000_000));
        let sum: u32 = body
            .bytes()
            .zip((2..=10).rev())
            .map(|(b, w)| u32::from(b - b'0') * w)
            .sum();
        let check = 11 - sum % 11;
        match check {
            11 => return format!("{body}0"),
            10 => continue,
            c => return format!("{body}{c}"),
        }
    }
}

const CODES: [&str; 14] = [
    "DEMO-HOSP",
    "GP-A",
    "LA-1",
    "CARE-X",
    "SVC-REABLE",
    "SITE-1",
    "CITIZEN",
    "carewoven",
    "governance",
    "analyst",
    "WARD-7",
    "PRACTITIONER-1",
    "a",
    "NHS-TRUST",
];

/// Every aggregate kind as the envelope names it.
pub const KINDS: [&str; 11] = [
    "person",
    "referral",
    "assessment",
    "care_plan",
    "care_team",
    "consent",
    "discharge",
    "meeting",
    "feedback",
    "flag",
    "organisation",
];

const TEXTS: [&str; 12] = [
    "",
    " ",
    "Synthetic Person",
    "needs a ramp at the front door",
    "\u{0}",
    "\u{202e}reversed",
    "émigré 名前 🙂",
    "line\nbreak\ttab",
    "%00%ff",
    "'; DROP TABLE records; --",
    "\u{feff}",
    "x",
];

thread_local! {
    /// How often (percent) a value is drawn from what must be refused: none in half the
    /// messages, so that some convert whole, and often in the others.
    static HOSTILE: Cell<u64> = const { Cell::new(10) };
}

/// Whether this value is to be a hostile one.
fn hostile(rng: &mut Rng) -> bool {
    let p = HOSTILE.with(Cell::get);
    p > 0 && rng.chance(p)
}

fn uuid(rng: &mut Rng) -> String {
    if !hostile(rng) {
        return uuid::Uuid::from_u64_pair(rng.next_u64(), rng.next_u64()).to_string();
    }
    match rng.below(10) {
        0 => "00000000-0000-0000-0000-000000000000".to_owned(),
        1 => "not-a-uuid".to_owned(),
        2 => format!(
            "{:032x}",
            u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())
        ),
        _ => uuid::Uuid::from_u64_pair(rng.next_u64(), rng.next_u64()).to_string(),
    }
}

fn date(rng: &mut Rng) -> String {
    if !hostile(rng) {
        return format!(
            "{:04}-{:02}-{:02}",
            rng.range(1930, 2024),
            rng.range(1, 12),
            rng.range(1, 28)
        );
    }
    match rng.below(10) {
        0 => "2024-02-30".to_owned(),
        1 => "1899-12-31".to_owned(),
        2 => "9999-12-31".to_owned(),
        3 => "24-01-01".to_owned(),
        _ => format!(
            "{:04}-{:02}-{:02}",
            rng.range(1900, 2030),
            rng.range(1, 12),
            rng.range(1, 28)
        ),
    }
}

fn text(rng: &mut Rng) -> String {
    if !hostile(rng) {
        return "a synthetic note".to_owned();
    }
    match rng.below(20) {
        0 => "x".repeat(rng.below(10_000)),
        1 => "é".repeat(rng.below(3_000)),
        _ => (*rng.pick(&TEXTS)).to_owned(),
    }
}

/// A string for the field `name`: usually what such a field holds, sometimes anything.
fn string_for(rng: &mut Rng, name: &str) -> String {
    if hostile(rng) {
        return match rng.below(5) {
            0 => uuid(rng),
            1 => nhs_number(rng),
            2 => date(rng),
            3 => (*rng.pick(&CODES)).to_owned(),
            _ => text(rng),
        };
    }
    if name.ends_with("_id") || name == "id" || name.ends_with("_ids") || name == "replaces" {
        uuid(rng)
    } else if name == "destination_code" {
        (*rng.pick(&["19", "29", "54", "65", "87"])).to_owned()
    } else if name.contains("nhs") {
        nhs_number(rng)
    } else if name == "aggregate_kind" || name == "kind" {
        (*rng.pick(&KINDS)).to_owned()
    } else if name.contains("date")
        || name.ends_with("_on")
        || name.contains("birth")
        || name.ends_with("_day")
        || name.ends_with("_by")
        || name.starts_with("valid_")
        || name.ends_with("_for")
        || matches!(
            name,
            "end" | "start" | "since" | "until" | "expected" | "supersedes"
        )
    {
        date(rng)
    } else if name.contains("organisation")
        || name.contains("service")
        || name.contains("code")
        || name.contains("site")
        || name.contains("user")
        || name.contains("practitioner")
        || name.contains("role")
        || name.contains("class")
        || name.contains("assessor")
        || name.contains("partner")
        || matches!(
            name,
            "reference" | "replaced" | "registered_gp" | "owner" | "by" | "ward" | "attendees"
        )
    {
        (*rng.pick(&CODES)).to_owned()
    } else {
        text(rng)
    }
}

fn int(rng: &mut Rng) -> i64 {
    if !hostile(rng) {
        return 1 + rng.below(5) as i64;
    }
    match rng.below(10) {
        0 => i64::MAX,
        1 => i64::MIN,
        2 => -1,
        3 => i64::from(i32::MAX),
        4 => i64::from(i32::MIN),
        _ => rng.below(100) as i64,
    }
}

fn timestamp(rng: &mut Rng, desc: &MessageDescriptor) -> DynamicMessage {
    let mut m = DynamicMessage::new(desc.clone());
    if !hostile(rng) {
        if let Some(f) = desc.get_field_by_name("seconds") {
            m.set_field(&f, Value::I64(1_700_000_000 + rng.below(50_000_000) as i64));
        }
        return m;
    }
    let seconds = match rng.below(8) {
        0 => int(rng),
        1 => -2_208_988_800 - 1, // just before 1900
        2 => 253_402_300_800,    // year 10000
        _ => 1_600_000_000 + rng.below(200_000_000) as i64,
    };
    let nanos = match rng.below(8) {
        0 => -1,
        1 => 1_000_000_000,
        2 => i32::MAX,
        _ => rng.below(1_000_000_000) as i32,
    };
    if let Some(f) = desc.get_field_by_name("seconds") {
        m.set_field(&f, Value::I64(seconds));
    }
    if let Some(f) = desc.get_field_by_name("nanos") {
        m.set_field(&f, Value::I32(nanos));
    }
    m
}

fn value(rng: &mut Rng, kind: &Kind, name: &str, depth: usize) -> Value {
    match kind {
        Kind::Double => Value::F64(*rng.pick(&[0.0, -1.0, f64::NAN, f64::INFINITY, 1e308, 0.5])),
        Kind::Float => Value::F32(*rng.pick(&[0.0, -1.0, f32::NAN, f32::INFINITY, 0.5])),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(int(rng) as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(int(rng)),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(int(rng) as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(int(rng) as u64),
        Kind::Bool => Value::Bool(rng.chance(50)),
        Kind::String => Value::String(string_for(rng, name)),
        Kind::Bytes => {
            let mut b = Vec::new();
            let n = rng.length(256);
            rng.bytes(n, &mut b);
            Value::Bytes(b.into())
        }
        Kind::Enum(e) => {
            // Clean values leave out 0, every enum's UNSPECIFIED.
            let values: Vec<i32> = e.values().map(|v| v.number()).filter(|n| *n != 0).collect();
            if !hostile(rng) && !values.is_empty() {
                Value::EnumNumber(*rng.pick(&values))
            } else {
                Value::EnumNumber(int(rng) as i32)
            }
        }
        Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => {
            Value::Message(timestamp(rng, m))
        }
        Kind::Message(m) => Value::Message(generate(rng, m, depth + 1)),
    }
}

/// A message of type `desc`, its fields set at random (nested to a bounded depth).
pub fn generate(rng: &mut Rng, desc: &MessageDescriptor, depth: usize) -> DynamicMessage {
    let mut m = DynamicMessage::new(desc.clone());
    if depth > 6 {
        return m;
    }
    let fields: Vec<_> = desc.fields().collect();
    // A oneof is set through one of its fields, picked here; its others stay unset.
    let mut oneofs_done: Vec<String> = Vec::new();
    for f in &fields {
        if let Some(o) = f.containing_oneof() {
            let name = o.full_name().to_owned();
            if oneofs_done.contains(&name) {
                continue;
            }
            oneofs_done.push(name);
            if rng.chance(95) {
                let choices: Vec<_> = o.fields().collect();
                let chosen = rng.pick(&choices).clone();
                let v = value(rng, &chosen.kind(), chosen.name(), depth);
                m.set_field(&chosen, v);
            }
            continue;
        }
        // Clean messages set every field; hostile ones leave some out.
        if HOSTILE.with(Cell::get) > 0 && !rng.chance(85) {
            continue;
        }
        let v = if f.is_list() {
            let n = match rng.below(20) {
                0 => rng.below(300),
                1..=4 => 0,
                _ => rng.below(4),
            };
            Value::List(
                (0..n)
                    .map(|_| value(rng, &f.kind(), f.name(), depth))
                    .collect(),
            )
        } else if f.is_map() {
            continue;
        } else {
            value(rng, &f.kind(), f.name(), depth)
        };
        m.set_field(f, v);
    }
    m
}

/// A generated message of type `desc`, encoded.
pub fn encoded(rng: &mut Rng, desc: &MessageDescriptor) -> Vec<u8> {
    let rate = if rng.chance(50) { 0 } else { 15 };
    HOSTILE.with(|h| h.set(rate));
    generate(rng, desc, 0).encode_to_vec()
}

/// A message of `depth` nested groups (the protobuf wire's own recursion), around `inner`.
pub fn deep_groups(rng: &mut Rng, inner: &[u8], depth: usize) -> Vec<u8> {
    let field = 1 + rng.below(30) as u8;
    let mut out = Vec::with_capacity(inner.len() + 2 * depth);
    out.extend(std::iter::repeat_n((field << 3) | 3, depth));
    out.extend_from_slice(inner);
    out.extend(std::iter::repeat_n((field << 3) | 4, depth));
    out
}

/// A length-delimited field nested `depth` times (each level claiming the rest).
pub fn deep_lengths(field: u8, inner: &[u8], depth: usize) -> Vec<u8> {
    let mut out = inner.to_vec();
    for _ in 0..depth {
        let mut level = vec![(field << 3) | 2];
        prost::encoding::encode_varint(out.len() as u64, &mut level);
        level.extend_from_slice(&out);
        out = level;
    }
    out
}

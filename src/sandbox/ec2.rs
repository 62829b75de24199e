//! EC2 (query protocol, XML responses): DescribeInstances and DescribeRegions.
//!
//! DescribeInstances supports `InstanceId.N`, the filters `tag:K`, `tag-key`, `instance-id`,
//! `instance-state-name` (values may use `*` and `?` as EC2 allows), and `MaxResults` (5–1000)
//! with `NextToken`. A page resumes scanning at the position the token names, so paging through
//! any number of instances is linear overall. Each instance is reported in its own reservation.

use std::fmt::Write as _;

use axum::http::StatusCode;
use axum::response::Response;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::identity::{Identity, glob_match};
use super::state::SandboxState;
use super::wire::{
    decode_next_token, ec2_error, encode_next_token, param, request_id, xml_escape, xml_ok,
};
use super::world::{Instance, PlatformType};

const NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
const REGIONS: [&str; 8] = [
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "eu-north-1",
    "ap-southeast-2",
    "ap-northeast-1",
];

pub(crate) fn handle(state: &SandboxState, _who: &Identity, form: &[(String, String)]) -> Response {
    // Every identity may describe: read access is account-wide (see identity.rs).
    match param(form, "Action") {
        Some("DescribeInstances") => describe_instances(state, form),
        Some("DescribeRegions") => describe_regions(state),
        Some(other) => ec2_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("The action {other} is not valid for this web service."),
        ),
        None => ec2_error(
            StatusCode::BAD_REQUEST,
            "MissingAction",
            "The request must contain the parameter Action.",
        ),
    }
}

struct Filter {
    name: String,
    values: Vec<String>,
}

/// `Prefix.N` values in N order (`InstanceId.1`, `InstanceId.2`, …).
fn numbered(form: &[(String, String)], prefix: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = form
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?;
            Some((n, v.clone()))
        })
        .collect();
    out.sort_by_key(|(n, _)| *n);
    out
}

fn filters(form: &[(String, String)]) -> Vec<Filter> {
    let mut names: Vec<(usize, String)> = form
        .iter()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix("Filter.")?;
            let (n, field) = rest.split_once('.')?;
            (field == "Name").then(|| Some((n.parse().ok()?, v.clone())))?
        })
        .collect();
    names.sort_by_key(|(n, _)| *n);
    names
        .into_iter()
        .map(|(n, name)| Filter {
            name,
            values: numbered(form, &format!("Filter.{n}.Value"))
                .into_iter()
                .map(|(_, v)| v)
                .collect(),
        })
        .collect()
}

fn matches(filter: &Filter, i: &Instance) -> bool {
    let any = |value: &str| filter.values.iter().any(|p| glob_match(p, value));
    match filter.name.as_str() {
        "instance-id" => any(&i.id),
        "instance-state-name" => any(i.state.name()),
        "tag-key" => i.tags.iter().any(|(k, _)| any(k)),
        name => match name.strip_prefix("tag:") {
            Some(key) => i.tag(key).is_some_and(any),
            None => false,
        },
    }
}

fn known_filter(name: &str) -> bool {
    matches!(name, "instance-id" | "instance-state-name" | "tag-key") || name.starts_with("tag:")
}

fn describe_instances(state: &SandboxState, form: &[(String, String)]) -> Response {
    let ids: Vec<String> = numbered(form, "InstanceId")
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let filters = filters(form);
    if let Some(bad) = filters.iter().find(|f| !known_filter(&f.name)) {
        return ec2_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            &format!("The filter '{}' is invalid", bad.name),
        );
    }
    let max_results = match param(form, "MaxResults").map(str::parse::<usize>) {
        None => None,
        Some(Ok(n)) if (5..=1000).contains(&n) => Some(n),
        Some(_) => {
            return ec2_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValue",
                &format!(
                    "Value ( {} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.",
                    param(form, "MaxResults").unwrap_or_default()
                ),
            );
        }
    };
    if max_results.is_some() && !ids.is_empty() {
        return ec2_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults",
        );
    }
    let start = match param(form, "NextToken") {
        None => 0,
        Some(t) => match decode_next_token("ec2", t) {
            Some(p) => p,
            None => {
                return ec2_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameterValue",
                    "The specified value for nextToken is invalid.",
                );
            }
        },
    };

    let world = state.world();
    let selected: Vec<&Instance>;
    let mut next = None;
    if ids.is_empty() {
        let limit = max_results.unwrap_or(usize::MAX);
        let mut page = Vec::new();
        let mut pos = start;
        while pos < world.instances.len() {
            let i = &world.instances[pos];
            pos += 1;
            if filters.iter().all(|f| matches(f, i)) {
                page.push(i);
                if page.len() == limit {
                    break;
                }
            }
        }
        // Like EC2, a full page gets a token even if nothing follows; a later empty page ends it.
        if page.len() == limit && pos < world.instances.len() {
            next = Some(encode_next_token("ec2", pos));
        }
        selected = page;
    } else {
        if let Some(bad) = ids.iter().find(|id| !valid_instance_id(id)) {
            return ec2_error(
                StatusCode::BAD_REQUEST,
                "InvalidInstanceID.Malformed",
                &format!("Invalid id: \"{bad}\""),
            );
        }
        let missing: Vec<&str> = ids
            .iter()
            .filter(|id| world.instance(id).is_none())
            .map(String::as_str)
            .collect();
        match missing.len() {
            0 => {}
            1 => {
                return ec2_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidInstanceID.NotFound",
                    &format!("The instance ID '{}' does not exist", missing[0]),
                );
            }
            _ => {
                return ec2_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidInstanceID.NotFound",
                    &format!("The instance IDs '{}' do not exist", missing.join(", ")),
                );
            }
        }
        selected = ids
            .iter()
            .filter_map(|id| world.instance(id))
            .filter(|i| filters.iter().all(|f| matches(f, i)))
            .collect();
    }

    let mut xml = String::with_capacity(256 + selected.len() * 1400);
    let _ = write!(
        xml,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"{NS}\">\n<requestId>{}</requestId>\n<reservationSet>",
        request_id()
    );
    for i in &selected {
        write_reservation(&mut xml, state.account(), i);
    }
    xml.push_str("</reservationSet>");
    if let Some(t) = next {
        let _ = write!(xml, "<nextToken>{}</nextToken>", xml_escape(&t));
    }
    xml.push_str("\n</DescribeInstancesResponse>");
    xml_ok(xml)
}

fn valid_instance_id(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|hex| {
        (hex.len() == 8 || hex.len() == 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn iso8601(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .map(|s| s.replace('Z', ".000Z"))
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned())
}

fn write_reservation(xml: &mut String, account: &str, i: &Instance) {
    let e = xml_escape;
    let reservation = format!("r-{}", i.id.get(2..).unwrap_or_default());
    let _ = write!(
        xml,
        "<item><reservationId>{}</reservationId><ownerId>{}</ownerId><groupSet/><instancesSet><item>",
        e(&reservation),
        account
    );
    let dns = format!(
        "ip-{}.ec2.internal",
        i.private_ip.to_string().replace('.', "-")
    );
    let _ = write!(
        xml,
        "<instanceId>{}</instanceId><imageId>{}</imageId><instanceState><code>{}</code><name>{}</name></instanceState>\
<privateDnsName>{}</privateDnsName><dnsName/><keyName/><amiLaunchIndex>0</amiLaunchIndex><instanceType>{}</instanceType>\
<launchTime>{}</launchTime><placement><availabilityZone>{}</availabilityZone><groupName/><tenancy>default</tenancy></placement>",
        e(&i.id),
        e(&i.image_id),
        i.state.code(),
        i.state.name(),
        e(&dns),
        e(&i.instance_type),
        iso8601(i.launch_time),
        e(&i.availability_zone),
    );
    if i.platform_type == PlatformType::Windows {
        xml.push_str("<platform>windows</platform>");
    }
    let _ = write!(
        xml,
        "<monitoring><state>disabled</state></monitoring><subnetId>{}</subnetId><vpcId>{}</vpcId>\
<privateIpAddress>{}</privateIpAddress><architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType>\
<rootDeviceName>/dev/xvda</rootDeviceName><virtualizationType>hvm</virtualizationType><hypervisor>xen</hypervisor>\
<platformDetails>{}</platformDetails><tagSet>",
        e(&i.subnet_id),
        e(&i.vpc_id),
        i.private_ip,
        match i.platform_type {
            PlatformType::Windows => "Windows",
            PlatformType::Linux => "Linux/UNIX",
        }
    );
    for (k, v) in &i.tags {
        let _ = write!(
            xml,
            "<item><key>{}</key><value>{}</value></item>",
            e(k),
            e(v)
        );
    }
    xml.push_str("</tagSet></item></instancesSet></item>");
}

fn describe_regions(state: &SandboxState) -> Response {
    let mut regions: Vec<&str> = REGIONS.to_vec();
    if !regions.contains(&state.region()) {
        regions.push(state.region());
    }
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeRegionsResponse xmlns=\"{NS}\">\n<requestId>{}</requestId>\n<regionInfo>",
        request_id()
    );
    for r in regions {
        let _ = write!(
            xml,
            "<item><regionName>{0}</regionName><regionEndpoint>ec2.{0}.amazonaws.com</regionEndpoint><optInStatus>opt-in-not-required</optInStatus></item>",
            xml_escape(r)
        );
    }
    xml.push_str("</regionInfo>\n</DescribeRegionsResponse>");
    xml_ok(xml)
}

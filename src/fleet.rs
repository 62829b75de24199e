//! The fleet: several (profile, region) pairs listed as one. Each pair gets its own SDK
//! clients; all are listed at once with a bound on parallel calls, and a pair that fails
//! (expired sign-in, no access, unreachable region) is reported with its reason while the
//! others still list.

use futures_util::StreamExt as _;

use crate::aws::factory::{ApiFactory, SdkFactory};
use crate::aws::{AwsError, Instance, TagFilter};
use crate::config::{AwsConfig, FleetConfig};

/// At most this many pairs are being listed at once.
pub const PARALLEL: usize = 6;

/// One (profile, region) pair.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    /// The profile (`None`: the default chain).
    pub profile: Option<String>,
    /// The region (`None`: the profile's own).
    pub region: Option<String>,
}

impl Source {
    /// `profile/region` for messages.
    pub fn label(&self) -> String {
        format!(
            "{}/{}",
            self.profile.as_deref().unwrap_or("(default)"),
            self.region.as_deref().unwrap_or("(profile's region)")
        )
    }
}

/// The pairs to list: `profiles` (names or globs, matched against the AWS config's profiles)
/// times `regions` (or each profile's own region when none are given). Names that match no
/// profile are kept as given, so the error names them.
pub fn sources(profiles: &[String], regions: &[String], known: &[String]) -> Vec<Source> {
    let mut names: Vec<String> = Vec::new();
    for p in profiles {
        if p.contains(['*', '?']) {
            for k in known {
                if crate::rules::wildcard_match(p, k, true) && !names.contains(k) {
                    names.push(k.clone());
                }
            }
        } else if !names.contains(p) {
            names.push(p.clone());
        }
    }
    let regions: Vec<Option<String>> = if regions.is_empty() {
        vec![None]
    } else {
        regions.iter().cloned().map(Some).collect()
    };
    names
        .into_iter()
        .flat_map(|p| {
            regions.iter().map(move |r| Source {
                profile: Some(p.clone()),
                region: r.clone(),
            })
        })
        .collect()
}

/// What the command line asks for, over the config's `[fleet]`; `None` when no fleet is
/// configured or asked for (the single profile and region, as before).
pub fn requested(
    fleet: &FleetConfig,
    profiles: &[String],
    regions: &[String],
    all_profiles: bool,
    known: &[String],
) -> Option<Vec<Source>> {
    let profiles: Vec<String> = if all_profiles {
        known.to_vec()
    } else if !profiles.is_empty() {
        profiles.to_vec()
    } else {
        fleet.profiles.clone()
    };
    let regions = if regions.is_empty() {
        fleet.regions.clone()
    } else {
        regions.to_vec()
    };
    (!profiles.is_empty()).then(|| sources(&profiles, &regions, known))
}

/// One pair's answer.
#[derive(Debug)]
pub struct Listed {
    /// The pair.
    pub source: Source,
    /// The account (STS), once known.
    pub account: Option<String>,
    /// The region the clients used.
    pub region: Option<String>,
    /// Its instances, or why not.
    pub result: Result<Vec<Instance>, AwsError>,
}

/// Lists every pair, [`PARALLEL`] at a time, with clients from the `[aws]` settings `base`;
/// answers in the order of `sources`.
pub async fn list(base: &AwsConfig, sources: &[Source], filters: &[TagFilter]) -> Vec<Listed> {
    let factory = SdkFactory { aws: base.clone() };
    list_with(&factory, sources, filters).await
}

/// [`list`] with clients from `factory`.
pub async fn list_with(
    factory: &dyn ApiFactory,
    sources: &[Source],
    filters: &[TagFilter],
) -> Vec<Listed> {
    let mut answers: Vec<(usize, Listed)> = futures_util::stream::iter(sources.iter().enumerate())
        .map(|(i, source)| async move { (i, list_one(factory, source, filters).await) })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    answers.sort_by_key(|(i, _)| *i);
    answers.into_iter().map(|(_, l)| l).collect()
}

async fn list_one(factory: &dyn ApiFactory, source: &Source, filters: &[TagFilter]) -> Listed {
    let api = match factory
        .build(source.profile.clone(), source.region.clone())
        .await
    {
        Ok(api) => api,
        Err(e) => {
            return Listed {
                source: source.clone(),
                account: None,
                region: source.region.clone(),
                result: Err(e),
            };
        }
    };
    let region = api.location().1;
    let (identity, instances) = tokio::join!(api.caller_identity(), api.list_instances(filters));
    let account = identity.as_ref().ok().map(|i| i.account.clone());
    Listed {
        source: source.clone(),
        account,
        region,
        result: match (identity, instances) {
            (Err(e), _) | (_, Err(e)) => Err(e),
            (Ok(_), Ok(list)) => Ok(list),
        },
    }
}

/// The `account=…` and `region=…` terms of a target: they choose where in the fleet to look,
/// not which instance (an account is its id or its `[fleet.aliases]` name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Place {
    /// Account id or alias.
    pub account: Option<String>,
    /// Region.
    pub region: Option<String>,
}

impl Place {
    /// Whether no term was given.
    pub fn is_empty(&self) -> bool {
        self.account.is_none() && self.region.is_none()
    }

    /// Whether a pair in `account` (with its alias) and `region` is in this place.
    pub fn admits(&self, account: Option<&str>, alias: Option<&str>, region: Option<&str>) -> bool {
        let account_ok = self
            .account
            .as_deref()
            .is_none_or(|want| account == Some(want) || alias == Some(want));
        let region_ok = self
            .region
            .as_deref()
            .is_none_or(|want| region.is_none_or(|r| r == want));
        account_ok && region_ok
    }

    /// `account=dev region=eu-west-1`, for messages.
    pub fn describe(&self) -> String {
        let mut terms = Vec::new();
        if let Some(a) = &self.account {
            terms.push(format!("account={a}"));
        }
        if let Some(r) = &self.region {
            terms.push(format!("region={r}"));
        }
        terms.join(" ")
    }
}

/// Splits the `account=`/`region=` terms off a target; the rest is the target as before.
pub fn split_place(target: &str) -> (String, Place) {
    let mut place = Place::default();
    let mut rest: Vec<&str> = Vec::new();
    for term in target
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
    {
        match term.split_once('=') {
            Some(("account", v)) if !v.is_empty() => place.account = Some(v.to_owned()),
            Some(("region", v)) if !v.is_empty() => place.region = Some(v.to_owned()),
            _ => rest.push(term),
        }
    }
    if place.is_empty() {
        return (target.to_owned(), place);
    }
    (rest.join(" "), place)
}

/// A pair with instances that match, its account and the matches.
pub type Found = (Source, Option<String>, Vec<Instance>);

/// Every pair in `place` whose instances match `matches`, with the account and matches. Pairs
/// that fail are said on stderr and skipped.
pub async fn find(
    base: &AwsConfig,
    sources: &[Source],
    place: &Place,
    aliases: &std::collections::BTreeMap<String, String>,
    filters: &[TagFilter],
    matches: impl Fn(&Instance) -> bool,
) -> Vec<Found> {
    // A region term saves calls to pairs elsewhere.
    let sources: Vec<Source> = sources
        .iter()
        .filter(|s| {
            place
                .region
                .as_deref()
                .is_none_or(|want| s.region.as_deref().is_none_or(|r| r == want))
        })
        .cloned()
        .collect();
    let mut found: Vec<(Source, Option<String>, Vec<Instance>)> = Vec::new();
    for l in list(base, &sources, filters).await {
        let alias = l.account.as_ref().and_then(|a| aliases.get(a));
        if !place.admits(
            l.account.as_deref(),
            alias.map(String::as_str),
            l.region.as_deref(),
        ) {
            continue;
        }
        match l.result {
            Ok(instances) => {
                let hits: Vec<Instance> = instances.into_iter().filter(|i| matches(i)).collect();
                if !hits.is_empty() {
                    let mut source = l.source;
                    source.region = l.region.or(source.region);
                    found.push((source, l.account, hits));
                }
            }
            Err(e) => eprintln!("ssmtui: {}: {e} (skipped)", l.source.label()),
        }
    }
    found
}

/// Where a target lives in the fleet: the one pair in `place` whose instances match `matches`.
/// `None` when no pair has a match (the caller reports it as usual); an ambiguity across pairs
/// is an error listing them. Pairs that fail are said on stderr and skipped.
pub async fn locate(
    base: &AwsConfig,
    sources: &[Source],
    place: &Place,
    aliases: &std::collections::BTreeMap<String, String>,
    filters: &[TagFilter],
    matches: impl Fn(&Instance) -> bool,
) -> Result<Option<Source>, crate::error::UserError> {
    let mut found = find(base, sources, place, aliases, filters, matches).await;
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop().map(|(s, _, _)| s)),
        _ => {
            let mut err = crate::error::UserError::new(
                crate::error::ErrorKind::NotFound,
                format!(
                    "the target matches instances in {} places of the fleet",
                    found.len()
                ),
            );
            for (s, account, hits) in &found {
                for i in hits {
                    let account = account.as_deref().unwrap_or("?");
                    let shown = match aliases.get(account) {
                        Some(alias) => format!("{alias}, {account}"),
                        None => account.to_owned(),
                    };
                    err = err.hint(format!(
                        "{} ({}) in {} (account {shown})",
                        i.name.as_deref().unwrap_or("-"),
                        i.id,
                        s.label(),
                    ));
                }
            }
            Err(err
                .hint("narrow it with account=… or region=… in the target, or use its instance id"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_expand_against_the_known_profiles_times_the_regions() {
        let known: Vec<String> = ["dev-admin", "dev-ro", "prod-ro"]
            .map(str::to_owned)
            .to_vec();
        let s = sources(
            &["dev-*".to_owned(), "prod-ro".to_owned(), "gone".to_owned()],
            &["eu-west-1".to_owned(), "us-east-1".to_owned()],
            &known,
        );
        let labels: Vec<String> = s.iter().map(Source::label).collect();
        assert_eq!(
            labels,
            [
                "dev-admin/eu-west-1",
                "dev-admin/us-east-1",
                "dev-ro/eu-west-1",
                "dev-ro/us-east-1",
                "prod-ro/eu-west-1",
                "prod-ro/us-east-1",
                "gone/eu-west-1",
                "gone/us-east-1",
            ]
        );
        let fleet = FleetConfig {
            profiles: vec!["prod-*".to_owned()],
            ..FleetConfig::default()
        };
        assert!(requested(&FleetConfig::default(), &[], &[], false, &known).is_none());
        let from_config = requested(&fleet, &[], &[], false, &known).unwrap();
        assert_eq!(from_config.len(), 1);
        assert_eq!(from_config[0].region, None);
        assert_eq!(requested(&fleet, &[], &[], true, &known).unwrap().len(), 3);
    }
}

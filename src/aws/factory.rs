//! Building API clients for a profile and region: `:profile`/`:region` in the TUI and the
//! fleet's (profile, region) sources.

use std::sync::Arc;

use async_trait::async_trait;

use super::{AwsError, SsmApi};
use crate::config::AwsConfig;

/// Builds the API client for a profile and region (`:profile`, `:region`, the fleet).
#[async_trait]
pub trait ApiFactory: Send + Sync {
    /// A client for this profile and region (`None`: the default chain).
    async fn build(
        &self,
        profile: Option<String>,
        region: Option<String>,
    ) -> Result<Arc<dyn SsmApi>, AwsError>;
}

/// Builds [`crate::aws::sdk::SdkApi`] clients from the `[aws]` config.
#[derive(Debug, Clone)]
pub struct SdkFactory {
    /// The `[aws]` settings other than profile and region.
    pub aws: AwsConfig,
}

#[async_trait]
impl ApiFactory for SdkFactory {
    async fn build(
        &self,
        profile: Option<String>,
        region: Option<String>,
    ) -> Result<Arc<dyn SsmApi>, AwsError> {
        let mut aws = self.aws.clone();
        aws.profile = profile;
        aws.region = region;
        Ok(Arc::new(crate::aws::sdk::SdkApi::new(&aws).await?))
    }
}

/// Always the same client (the fake world has one account everywhere).
pub struct SameApi(pub Arc<dyn SsmApi>);

#[async_trait]
impl ApiFactory for SameApi {
    async fn build(
        &self,
        _profile: Option<String>,
        _region: Option<String>,
    ) -> Result<Arc<dyn SsmApi>, AwsError> {
        Ok(self.0.clone())
    }
}

//! Seeding a new volume with a host directory's contents, through a short-lived container:
//! above both `volume` and `container`, which it joins.

use std::path::Path;
use std::sync::Arc;

use crate::container::{self, ContainerSpec};
use crate::error::Result;
use crate::image::SessionImage;
use crate::scope::Scope;
use crate::volume::VolumeGuard;
use crate::{blocking, engine};

/// Copies a host directory into a new volume through a short-lived container of `image`,
/// one of the scope's (so it counts against the test's budget and goes at its teardown
/// whatever happens here).
pub(crate) async fn seed(scope: Arc<Scope>, volume: &VolumeGuard, dir: &Path, image: SessionImage) -> Result<()> {
    let seeder = ContainerSpec::new(format!("{}-seed", volume.logical_name())).with_volume(volume, "/seed");
    if blocking::run(engine::current()).await?.copies_into_created_mounts() {
        // The seeding container never has to run.
        let spec = seeder.with_cmd(["true"]).with_copy(dir, "/seed").created_only();
        container::create::for_scope(scope, spec, image).await?.remove().await
    } else {
        let spec = seeder.with_cmd(["sleep", "3600"]);
        let c = container::create::for_scope(scope, spec, image).await?;
        c.copy_in(dir, "/seed", None).await?;
        c.remove().await
    }
}

//! Image references: the repository and tag of one, and where a mirror serves it.

/// `alpine:3.19.1` through mirror `m` is `m/library/alpine:3.19.1`, the path pull-through
/// caches serve. A reference that names another registry is not mirrored.
pub(super) fn mirrored(image: &str, mirror: &str) -> Option<String> {
    let image = image.strip_prefix("docker.io/").or_else(|| image.strip_prefix("index.docker.io/")).unwrap_or(image);
    let first = image.split('/').next().unwrap_or("");
    let has_registry = image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        return None;
    }
    if image.contains('/') {
        Some(format!("{mirror}/{image}"))
    } else {
        Some(format!("{mirror}/library/{image}"))
    }
}

/// The registry a reference is pulled from: its first component when that names a host
/// (it has a `.` or a `:`, or is `localhost`), else Docker Hub, `docker.io`.
pub(super) fn registry(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => match first {
            "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
            _ => first.to_string(),
        },
        _ => "docker.io".to_string(),
    }
}

/// Splits `repo:tag` or `repo@digest` into the repository and the tag or digest (`latest`
/// when there is neither). A `:` inside a registry's `host:port` is not a tag.
pub(super) fn split_tag(reference: &str) -> (&str, &str) {
    if let Some((repo, digest)) = reference.split_once('@') {
        return (repo, digest);
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(i) => (&reference[..last_slash + i], &reference[last_slash + i + 1..]),
        None => (reference, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_references_go_through_the_mirror_library_path() {
        assert_eq!(mirrored("alpine:3.19.1", "m:5000").as_deref(), Some("m:5000/library/alpine:3.19.1"));
        assert_eq!(
            mirrored("docker.io/library/alpine:3.19.1", "m:5000").as_deref(),
            Some("m:5000/library/alpine:3.19.1")
        );
        assert_eq!(mirrored("someone/tool:1", "m:5000").as_deref(), Some("m:5000/someone/tool:1"));
        assert_eq!(mirrored("alpine@sha256:abc", "m:5000").as_deref(), Some("m:5000/library/alpine@sha256:abc"));
    }

    #[test]
    fn references_to_other_registries_are_not_mirrored() {
        assert_eq!(mirrored("ghcr.io/org/img:1", "m:5000"), None);
        assert_eq!(mirrored("127.0.0.1:5055/library/x:1", "m:5000"), None);
        assert_eq!(mirrored("localhost/x:1", "m:5000"), None);
    }

    #[test]
    fn the_registry_is_the_first_component_only_when_it_names_a_host() {
        assert_eq!(registry("alpine:3.19.1"), "docker.io");
        assert_eq!(registry("someone/tool:1"), "docker.io");
        assert_eq!(registry("docker.io/library/alpine"), "docker.io");
        assert_eq!(registry("127.0.0.1:5165/private/app:1"), "127.0.0.1:5165");
        assert_eq!(registry("ghcr.io/org/img@sha256:ab"), "ghcr.io");
        assert_eq!(registry("localhost/x"), "localhost");
    }

    #[test]
    fn tags_digests_and_ports_split_apart() {
        assert_eq!(split_tag("alpine:3.19.1"), ("alpine", "3.19.1"));
        assert_eq!(split_tag("alpine"), ("alpine", "latest"));
        assert_eq!(split_tag("127.0.0.1:5055/library/x"), ("127.0.0.1:5055/library/x", "latest"));
        assert_eq!(split_tag("127.0.0.1:5055/library/x:1.0"), ("127.0.0.1:5055/library/x", "1.0"));
        assert_eq!(split_tag("alpine@sha256:abcd"), ("alpine", "sha256:abcd"));
    }
}

//! The one file the harness runs for a compose file: what `docker-compose config` printed
//! (variables substituted, `extends` merged, relative paths made absolute), with the test's
//! labels on every service, network (the default one included) and volume, every published
//! port turned into an ephemeral one on the loopback, and pulling turned off. What parallel
//! tests could not share is refused: a `container_name`, a network's or volume's own `name:`.
//!
//! Not an override file: compose v1 merges an override's top-level `networks` and `volumes`
//! by replacing each entry whole (their drivers and options would be lost), and an override
//! can add a port but never take a fixed host port away.

use std::collections::HashMap;
use std::path::Path;

use serde_norway::{Mapping, Value};

use crate::error::{ComposeError, Error, Result};

/// A rendered file, and the image each service runs (by service name, in file order).
#[derive(Debug)]
pub(super) struct Rendered {
    pub(super) yaml: String,
    pub(super) images: Vec<(String, String)>,
}

/// Renders what `config` printed for the project `project`. `labels` go on everything,
/// over the file's own; published ports are bound on `bind_ip` at a port Docker picks.
pub(super) fn render(
    config: &str,
    project: &str,
    labels: &HashMap<String, String>,
    bind_ip: &str,
    file: &Path,
) -> Result<Rendered> {
    let refuse =
        |reason: String, help: String| Error::Compose(ComposeError::File { file: file.to_path_buf(), reason, help });
    let unreadable = |what: String| {
        refuse(what, "check that the compose program is docker-compose 1.27 or later, or the plugin".to_string())
    };
    let mut root: Value = serde_norway::from_str(config)
        .map_err(|e| unreadable(format!("what `config` printed for it is not YAML ({e})")))?;
    let top = root.as_mapping_mut().ok_or_else(|| unreadable("what `config` printed is not a mapping".into()))?;
    // Compose v2 prints the project's name; the command line gives it instead.
    top.remove("name");
    let services = top
        .get_mut("services")
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| refuse("it has no services".into(), "give it at least one service".into()))?;
    let mut images = Vec::new();
    for (name, service) in services.iter_mut() {
        let name = scalar(name);
        let service = service.as_mapping_mut().ok_or_else(|| unreadable(format!("service {name} is not a mapping")))?;
        if let Some(fixed) = service.get("container_name") {
            return Err(refuse(
                format!("service {name} sets `container_name: {}`", scalar(fixed)),
                format!(
                    "remove `container_name`: every test that runs the file at once would ask for that one \
                     name. The harness names each container after the test's project; reach it with \
                     `compose.service(\"{name}\")`"
                ),
            ));
        }
        add_labels(service, labels);
        if let Some(ports) = service.get_mut("ports").and_then(Value::as_sequence_mut) {
            for port in ports.iter_mut() {
                let rewritten = ephemeral(port, bind_ip).ok_or_else(|| {
                    unreadable(format!("service {name} publishes a port the harness cannot read: {}", scalar(port)))
                })?;
                *port = Value::String(rewritten);
            }
        }
        // The images are the harness's to have present; compose never reaches a registry.
        service.insert("pull_policy".into(), "never".into());
        match service.get("image") {
            Some(image) => images.push((name, scalar(image))),
            None => {
                return Err(refuse(
                    format!("service {name} has no `image:`, only a `build:`"),
                    format!(
                        "build the image first and name it in `image:` for service {name}; the harness runs \
                         compose with --no-build"
                    ),
                ))
            }
        }
    }
    // The default network is declared if the file does not: it gets the labels too.
    let networks = section(top, "networks");
    networks.entry("default".into()).or_insert(Value::Mapping(Mapping::new()));
    label_entries(networks, "network", project, labels, &refuse)?;
    if top.contains_key("volumes") {
        label_entries(section(top, "volumes"), "volume", project, labels, &refuse)?;
    }
    let yaml = serde_norway::to_string(&root).map_err(|e| unreadable(format!("it cannot be written back ({e})")))?;
    Ok(Rendered { yaml, images })
}

/// A top-level section as a mapping (created when missing or empty).
fn section<'a>(top: &'a mut Mapping, key: &str) -> &'a mut Mapping {
    let entry = top.entry(key.into()).or_insert(Value::Mapping(Mapping::new()));
    if !entry.is_mapping() {
        *entry = Value::Mapping(Mapping::new());
    }
    entry.as_mapping_mut().expect("made a mapping just above")
}

/// Labels every network or volume that compose creates; refuses one with a name of its own.
/// An external one is not compose's to create, and is left as it is.
fn label_entries(
    entries: &mut Mapping,
    kind: &str,
    project: &str,
    labels: &HashMap<String, String>,
    refuse: &dyn Fn(String, String) -> Error,
) -> Result<()> {
    for (key, def) in entries.iter_mut() {
        let key = scalar(key);
        if !def.is_mapping() {
            *def = Value::Mapping(Mapping::new());
        }
        let def = def.as_mapping_mut().expect("made a mapping just above");
        if def.get("external").is_some_and(|e| e.as_bool() != Some(false)) {
            continue;
        }
        // Compose v2 prints every name, its own `<project>_<key>` included.
        if let Some(name) = def.get("name").map(scalar).filter(|n| *n != format!("{project}_{key}")) {
            return Err(refuse(
                format!("{kind} {key} sets `name: {name}`"),
                format!(
                    "remove the `name:` of {kind} {key}: every test that runs the file at once would ask for \
                     that one name, and compose would share it between them. Without it, compose names it \
                     after the test's project"
                ),
            ));
        }
        add_labels(def, labels);
    }
    Ok(())
}

/// The file's own labels (a mapping, or a list of `key=value`) with the harness's over them.
fn add_labels(def: &mut Mapping, labels: &HashMap<String, String>) {
    let mut merged = match def.remove("labels") {
        Some(Value::Mapping(m)) => m,
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|item| {
                let item = scalar(item);
                let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                (Value::from(k), Value::from(v))
            })
            .collect(),
        _ => Mapping::new(),
    };
    let mut ours: Vec<_> = labels.iter().collect();
    ours.sort();
    for (k, v) in ours {
        merged.insert(k.as_str().into(), v.as_str().into());
    }
    def.insert("labels".into(), Value::Mapping(merged));
}

/// A published port as `IP::TARGET[/PROTOCOL]`: the container port kept, the host port
/// left to Docker, the host IP the harness's. Short (`"8080:80/udp"`, `"80"`, `80`) and
/// long (`{target: 80, published: 8080}`) syntax alike; `None` when it has no container port.
fn ephemeral(port: &Value, ip: &str) -> Option<String> {
    let (target, protocol) = match port {
        Value::Mapping(m) => (m.get("target").map(scalar)?, m.get("protocol").map(scalar)),
        Value::String(_) | Value::Number(_) => {
            let text = scalar(port);
            let (spec, protocol) = match text.split_once('/') {
                Some((spec, p)) => (spec.to_string(), Some(p.to_string())),
                None => (text, None),
            };
            (spec.rsplit(':').next().unwrap_or_default().to_string(), protocol)
        }
        _ => return None,
    };
    if target.is_empty() {
        return None;
    }
    Some(match protocol.filter(|p| !p.is_empty()) {
        Some(p) => format!("{ip}::{target}/{p}"),
        None => format!("{ip}::{target}"),
    })
}

/// A scalar as text (a string as it is, a number or boolean as written).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => serde_norway::to_string(other).map(|s| s.trim().to_string()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROJECT: &str = "dh-t-1234abcd-app";

    fn labels() -> HashMap<String, String> {
        HashMap::from([
            ("docker-harness.managed".to_string(), "true".to_string()),
            ("docker-harness.expires".to_string(), "1700000000".to_string()),
        ])
    }

    fn rendered(config: &str) -> Result<Value> {
        let r = render(config, PROJECT, &labels(), "127.0.0.1", Path::new("compose.yml"))?;
        Ok(serde_norway::from_str(&r.yaml).expect("the rendered file is YAML"))
    }

    fn refusal(config: &str) -> String {
        rendered(config).expect_err("refused").to_string()
    }

    fn label<'a>(v: &'a Value, path: &[&str], key: &str) -> Option<&'a str> {
        let mut at = v;
        for p in path {
            at = at.get(p)?;
        }
        at.get("labels")?.get(key)?.as_str()
    }

    #[test]
    fn every_service_network_and_volume_carries_the_labels_the_default_network_too() {
        let v = rendered(
            "services:\n  web:\n    image: i\n    labels:\n      app: demo\n\
             \x20 job:\n    image: i\n    labels: [\"a=b\", \"bare\"]\n\
             volumes:\n  data:\n  cache:\n    driver: local\n    labels:\n      keep: me\n",
        )
        .unwrap();
        for path in [
            &["services", "web"][..],
            &["services", "job"],
            &["networks", "default"],
            &["volumes", "data"],
            &["volumes", "cache"],
        ] {
            assert_eq!(label(&v, path, "docker-harness.managed"), Some("true"), "{path:?}");
            assert_eq!(label(&v, path, "docker-harness.expires"), Some("1700000000"), "{path:?}: a string");
        }
        assert_eq!(label(&v, &["services", "web"], "app"), Some("demo"));
        assert_eq!(label(&v, &["services", "job"], "a"), Some("b"));
        assert_eq!(label(&v, &["services", "job"], "bare"), Some(""));
        assert_eq!(label(&v, &["volumes", "cache"], "keep"), Some("me"));
        assert_eq!(v["volumes"]["cache"]["driver"].as_str(), Some("local"), "the driver is kept");
    }

    #[test]
    fn a_declared_default_network_keeps_its_settings_and_gains_the_labels() {
        let v = rendered(
            "services:\n  web:\n    image: i\nnetworks:\n  default:\n    driver: bridge\n    internal: true\n",
        )
        .unwrap();
        assert_eq!(v["networks"]["default"]["driver"].as_str(), Some("bridge"));
        assert_eq!(v["networks"]["default"]["internal"].as_bool(), Some(true));
        assert_eq!(label(&v, &["networks", "default"], "docker-harness.managed"), Some("true"));
    }

    #[test]
    fn the_harness_labels_win_over_the_files_own() {
        let v = rendered("services:\n  web:\n    image: i\n    labels:\n      docker-harness.managed: 'no'\n").unwrap();
        assert_eq!(label(&v, &["services", "web"], "docker-harness.managed"), Some("true"));
    }

    #[test]
    fn every_published_port_becomes_an_ephemeral_loopback_one() {
        let v = rendered(
            "services:\n  web:\n    image: i\n    ports:\n    - 8080:80\n    - '127.0.0.1:5353:53/udp'\n\
             \x20   - '9090'\n    - 7000\n    - published: 8443\n      target: 443\n\
             \x20   - target: 90\n      published: '9999'\n      host_ip: 0.0.0.0\n\
             \x20     protocol: tcp\n      mode: host\n",
        )
        .unwrap();
        let ports: Vec<&str> =
            v["services"]["web"]["ports"].as_sequence().unwrap().iter().filter_map(|p| p.as_str()).collect();
        assert_eq!(
            ports,
            [
                "127.0.0.1::80",
                "127.0.0.1::53/udp",
                "127.0.0.1::9090",
                "127.0.0.1::7000",
                "127.0.0.1::443",
                "127.0.0.1::90/tcp"
            ]
        );
    }

    #[test]
    fn a_remote_daemon_publishes_where_this_host_can_connect() {
        let r = render(
            "services:\n  web:\n    image: i\n    ports: ['80']\n",
            PROJECT,
            &labels(),
            "0.0.0.0",
            Path::new("f"),
        )
        .unwrap();
        assert!(r.yaml.contains("0.0.0.0::80"), "{}", r.yaml);
    }

    #[test]
    fn nothing_is_pulled_and_the_images_are_listed_by_service() {
        let r = render(
            "services:\n  b:\n    image: two\n  a:\n    image: one\n",
            PROJECT,
            &labels(),
            "127.0.0.1",
            Path::new("f"),
        )
        .unwrap();
        assert_eq!(r.images, [("b".to_string(), "two".to_string()), ("a".to_string(), "one".to_string())]);
        let v: Value = serde_norway::from_str(&r.yaml).unwrap();
        assert_eq!(v["services"]["a"]["pull_policy"].as_str(), Some("never"));
    }

    #[test]
    fn a_container_name_is_refused_with_the_way_to_reach_the_service() {
        let text = refusal("services:\n  web:\n    image: i\n    container_name: web1\n");
        assert!(text.contains("service web sets `container_name: web1`"), "{text}");
        assert!(text.contains("help: remove `container_name`") && text.contains("compose.service(\"web\")"), "{text}");
    }

    #[test]
    fn a_fixed_network_or_volume_name_is_refused_but_compose_v2s_own_is_not() {
        let text = refusal("services:\n  web:\n    image: i\nnetworks:\n  back:\n    name: shared-net\n");
        assert!(
            text.contains("network back sets `name: shared-net`") && text.contains("help: remove the `name:`"),
            "{text}"
        );
        let text = refusal("services:\n  web:\n    image: i\nvolumes:\n  data:\n    name: fixed\n");
        assert!(text.contains("volume data sets `name: fixed`"), "{text}");
        let v2 = format!(
            "name: {PROJECT}\nservices:\n  web:\n    image: i\nnetworks:\n  default:\n    name: {PROJECT}_default\n\
             volumes:\n  data:\n    name: {PROJECT}_data\n"
        );
        let v = rendered(&v2).unwrap();
        assert!(v.get("name").is_none(), "the command line names the project");
        assert_eq!(label(&v, &["volumes", "data"], "docker-harness.managed"), Some("true"));
    }

    #[test]
    fn external_networks_and_volumes_are_left_as_they_are() {
        let v = rendered(
            "services:\n  web:\n    image: i\nnetworks:\n  outside:\n    external: true\n    name: corp\n\
             volumes:\n  old:\n    external:\n      name: legacy\n",
        )
        .unwrap();
        assert!(v["networks"]["outside"].get("labels").is_none());
        assert!(v["volumes"]["old"].get("labels").is_none());
        assert_eq!(label(&v, &["networks", "default"], "docker-harness.managed"), Some("true"));
    }

    #[test]
    fn a_service_that_only_builds_is_refused() {
        let text = refusal("services:\n  app:\n    build: .\n");
        assert!(text.contains("service app has no `image:`") && text.contains("--no-build"), "{text}");
    }

    #[test]
    fn output_that_is_not_a_compose_file_says_so() {
        assert!(refusal(": : :").contains("not YAML"));
        assert!(refusal("- a").contains("not a mapping"));
        assert!(refusal("version: '3'\n").contains("it has no services"));
    }
}

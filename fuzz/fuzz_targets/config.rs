//! Configuration files: the first byte chooses the TOML configuration
//! (parse → environment → validate → tokens → schemas → apps, rules and
//! mappings compiled) or a custom schema file (JSON → schema definition).
//! Nothing here touches the filesystem or the network.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scim_gateway::config::Settings;
use scim_gateway::lifecycle::Apps;
use scim_gateway::scim::schema::{Registry, SchemaDef};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if selector & 1 == 1 {
        if let Ok(raw) = serde_json::from_str(text) {
            let _ = SchemaDef::parse(raw);
        }
        return;
    }
    let Ok(mut settings) = Settings::parse(text) else {
        return;
    };
    settings.apply_env(|_| None);
    if settings.validate().is_err() {
        return;
    }
    let _ = settings.token_hashes();
    let _ = settings.admin_token_hashes();
    if settings.scim.schemas_dir.is_some() {
        return; // would read the filesystem
    }
    let Ok(registry) = Registry::load(&settings.scim) else {
        return;
    };
    let _ = Apps::compile(
        &registry,
        &settings.apps,
        &settings.rules,
        &settings.lifecycle,
    );
});

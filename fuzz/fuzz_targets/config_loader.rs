//! The config loader (`mcp_gateway_config::parse_str`): JSON with comments, environment
//! overrides, schema check, validation, conversion. Input: UTF-8 text; an odd length
//! chooses an environment with a few overrides set (some of them invalid) or none.
//!
//! Properties: no panic; an error always has at least one line to print.
//! Note: validation resolves upstream host names (blocking DNS), so host names the fuzzer
//! invents cost a resolver round trip each; the corpus uses IP literals and `localhost`.

#![no_main]

use libfuzzer_sys::fuzz_target;

const ENV: [(&str, &str); 6] = [
    ("PORT", "9090"),
    ("CLUSTER_WORKERS", "auto"),
    ("MAX_CONNECTIONS", "-1"),
    ("KEEP_ALIVE_TIMEOUT", "5000x"),
    ("LOG_LEVEL", "debug"),
    ("SESSION_SECRET", "${SESSION_SECRET}"),
];

fn some_env(name: &str) -> Option<String> {
    ENV.iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| (*v).to_string())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let with_env = data.len() % 2 == 1;
    let result = if with_env {
        mcp_gateway_config::parse_str(text, &some_env)
    } else {
        mcp_gateway_config::parse_str(text, &|_| None)
    };
    if let Err(err) = result {
        assert!(
            !err.errors().is_empty(),
            "an error with nothing to say: {err}"
        );
        let _ = err.to_string();
    }
});

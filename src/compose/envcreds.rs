//! A service's environment (`env_file:` files, then `environment:`, which wins), with literal
//! credentials judged by the webhook's own detector (by name and by value). By default each
//! becomes a generated secret: sealed, mounted at `/run/secrets/<name>`, and `VAR_FILE`
//! pointing at it instead of the value (the `_FILE` convention of the official images).
//! Values interpolated from the shell or `.env` count as literals: they would land in the
//! manifest as text.

use zeroize::Zeroizing;

use super::dotenv::{self, Lookup};
use super::error::ComposeError;
use super::load::{display, file_pos};
use super::model::EnvVar;
use super::report::Report;
use super::service::Service;
use super::yaml::Pos;
use super::Environment;
use crate::policy::detect::literal_credential;

/// `--env-credentials`: what to do with literal credentials in a service's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EnvCredentials {
    /// Seal each into a generated secret and set `VAR_FILE` instead.
    #[default]
    Convert,
    /// Leave them in env (the report still lists them).
    Keep,
    /// Stop with an error listing them.
    Fail,
}

/// A credential moved out of env.
pub struct Generated {
    pub secret: String,
    pub variable: String,
    pub value: Zeroizing<Vec<u8>>,
    pub pos: Pos,
}

/// The environment a container gets, and the credentials taken out of it.
#[derive(Default)]
pub struct ServiceEnv {
    pub plain: Vec<(String, String)>,
    pub generated: Vec<Generated>,
}

/// Reads the service's env files (dotenv format, `${VAR}` from the project environment).
pub fn env_file_vars(
    svc: &Service,
    env: &Environment,
    cwd: &std::path::Path,
) -> Result<Vec<EnvVar>, ComposeError> {
    let mut out: Vec<EnvVar> = Vec::new();
    for (path, required, pos) in &svc.env_files {
        let name = display(path, cwd);
        let Some(entries) = dotenv::read_file(path, *required, &name, pos, Lookup::Vars(env))?
        else {
            continue;
        };
        for e in entries {
            out.retain(|v| v.name != e.name);
            out.push(EnvVar {
                name: e.name,
                value: Some(e.value),
                from_vars: e.from_vars,
                pos: file_pos(&name, e.line),
            });
        }
    }
    Ok(out)
}

/// The generated secret's name for `variable` of `service`: `<service>_<variable>` lowercased,
/// cut to Swarm's 64 characters.
pub fn generated_name(service: &str, variable: &str) -> String {
    let raw = format!("{service}_{}", variable.to_ascii_lowercase());
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(crate::spec::MAX_NAME_LEN)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The service's final environment, with credentials handled per `mode`.
pub fn service_env(
    svc: &Service,
    env: &Environment,
    mode: EnvCredentials,
    cwd: &std::path::Path,
    report: &mut Report,
) -> Result<ServiceEnv, ComposeError> {
    let mut vars = env_file_vars(svc, env, cwd)?;
    for v in &svc.environment {
        vars.retain(|o| o.name != v.name);
        let mut v = v.clone();
        if v.value.is_none() {
            // `environment: [NAME]`: the value comes from the project environment.
            v.value = env.get(&v.name).map(str::to_string);
            v.from_vars = v.value.is_some();
        }
        vars.push(v);
    }
    let mut out = ServiceEnv::default();
    let mut refused = Vec::new();
    for v in vars {
        let Some(value) = v.value else { continue };
        let Some(reason) = literal_credential(&v.name, &value) else {
            out.plain.push((v.name, value));
            continue;
        };
        let origin = if v.from_vars {
            " (its value is interpolated from the shell or .env)"
        } else {
            ""
        };
        let why = reason.describe();
        match mode {
            EnvCredentials::Keep => {
                report.env.push(format!(
                    "{}: service {}: {} holds a literal credential ({why}){origin}; kept in env (--env-credentials keep): the output will not pass review at baseline",
                    v.pos, svc.name, v.name
                ));
                out.plain.push((v.name, value));
            }
            EnvCredentials::Fail => refused.push(format!("{}: {} ({why}){origin}", v.pos, v.name)),
            EnvCredentials::Convert => {
                let secret = generated_name(&svc.name, &v.name);
                if crate::spec::check_name(&secret).is_err() {
                    return Err(ComposeError::at(
                        &v.pos,
                        format!(
                            "cannot name a secret for {}: rename the service or the variable",
                            v.name
                        ),
                    ));
                }
                let file_var = format!("{}_FILE", v.name);
                report.env.push(format!(
                    "{}: service {}: {} held a literal credential ({why}){origin}; sealed as secret {secret}, and {file_var}=/run/secrets/{secret} replaces it: the image must read {file_var} (the official mysql, mariadb, postgres… images do)",
                    v.pos, svc.name, v.name
                ));
                out.generated.push(Generated {
                    secret,
                    variable: v.name,
                    value: Zeroizing::new(value.into_bytes()),
                    pos: v.pos,
                });
            }
        }
    }
    if !refused.is_empty() {
        return Err(ComposeError::Input(format!(
            "service {} has literal credentials in its environment (--env-credentials fail): {}. Move each into secrets: and set VAR_FILE=/run/secrets/NAME, or use --env-credentials convert",
            svc.name,
            refused.join("; ")
        )));
    }
    // `VAR_FILE` replaces any `VAR_FILE` already set: it must name the sealed file.
    for g in &out.generated {
        let file_var = format!("{}_FILE", g.variable);
        out.plain.retain(|(n, _)| *n != file_var);
        out.plain
            .push((file_var, format!("/run/secrets/{}", g.secret)));
    }
    Ok(out)
}

//! Where the server is and which token to send: flags win over the
//! environment, the environment over the config file, the file over the
//! default. Resolution is a pure function so the order is unit-tested.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use super::exit::CliError;

pub const URL_ENV: &str = "MERIDIAN_URL";
pub const TOKEN_ENV: &str = "MERIDIAN_TOKEN";
/// `serve`'s default listen address, so a local server needs no setting.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
/// Tried in this order inside `<config dir>/meridian/`.
const FILE_NAMES: [&str; 3] = ["config.toml", "config.yaml", "config.yml"];

/// The config file's settings; every key optional.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub server: Option<String>,
    pub token: Option<String>,
}

/// One place a setting can come from, for messages that say which to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag => f.write_str("--server/--token"),
            Self::Env => write!(f, "{URL_ENV}/{TOKEN_ENV}"),
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Default => f.write_str("the default"),
        }
    }
}

/// An API token; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Without a trailing slash, so paths append cleanly.
    pub server: String,
    pub server_source: Source,
    pub token: Option<Token>,
    pub token_source: Option<Source>,
}

/// The values one source gives.
#[derive(Debug, Default, Clone)]
pub struct Layer {
    pub server: Option<String>,
    pub token: Option<String>,
}

/// Reads the environment and the config file and resolves `flags` over them.
pub fn load(flags: Layer) -> Result<Settings, CliError> {
    let env = Layer {
        server: non_empty_env(URL_ENV),
        token: non_empty_env(TOKEN_ENV),
    };
    let file = match config_file() {
        Some(path) => Some((read_file(&path)?, path)),
        None => None,
    };
    resolve(flags, env, file)
}

/// Flags over env over file over the default; blank values count as unset
/// so `MERIDIAN_TOKEN=` in a CI job does not hide the config file's token.
pub fn resolve(
    flags: Layer,
    env: Layer,
    file: Option<(FileSettings, PathBuf)>,
) -> Result<Settings, CliError> {
    let (file_settings, file_path) = match file {
        Some((settings, path)) => (settings, Some(path)),
        None => (FileSettings::default(), None),
    };
    let file_source = || file_path.clone().map_or(Source::Default, Source::File);
    let pick = |flag: Option<String>, env: Option<String>, file: Option<String>| {
        let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
        if !blank(&flag) {
            flag.map(|v| (v, Source::Flag))
        } else if !blank(&env) {
            env.map(|v| (v, Source::Env))
        } else if !blank(&file) {
            file.map(|v| (v, file_source()))
        } else {
            None
        }
    };
    let (server, server_source) = pick(flags.server, env.server, file_settings.server)
        .unwrap_or_else(|| (DEFAULT_SERVER.to_owned(), Source::Default));
    let server = normalize_server(&server).map_err(|why| {
        CliError::usage(format!("server `{server}` (from {server_source}): {why}"))
    })?;
    let (token, token_source) = match pick(flags.token, env.token, file_settings.token) {
        Some((token, source)) => (Some(Token(token.trim().to_owned())), Some(source)),
        None => (None, None),
    };
    Ok(Settings {
        server,
        server_source,
        token,
        token_source,
    })
}

/// `host:port` alone means plain HTTP, the way `serve --listen` is written.
fn normalize_server(text: &str) -> Result<String, String> {
    let text = text.trim();
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme must be http or https, not `{}`",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL names no host".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("give the server's base URL, without `?` or `#`".to_owned());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The first config file that exists in the user's config directory
/// (`$XDG_CONFIG_HOME/meridian` or `~/.config/meridian` on Linux).
fn config_file() -> Option<PathBuf> {
    let dir = dirs::config_dir()?.join("meridian");
    FILE_NAMES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

fn read_file(path: &Path) -> Result<FileSettings, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::failure(format!("cannot read {}: {e}", path.display())))?;
    parse_file(path, &text)
}

fn parse_file(path: &Path, text: &str) -> Result<FileSettings, CliError> {
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let parsed = if is_toml {
        toml::from_str(text).map_err(|e| e.message().to_owned())
    } else if text.trim().is_empty() {
        // An empty YAML document is null, not an empty mapping.
        Ok(FileSettings::default())
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
    };
    parsed.map_err(|why| {
        CliError::usage(format!(
            "{}: {why} (expected `server` and `token`)",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(server: Option<&str>, token: Option<&str>) -> Layer {
        Layer {
            server: server.map(str::to_owned),
            token: token.map(str::to_owned),
        }
    }

    fn file(server: Option<&str>, token: Option<&str>) -> Option<(FileSettings, PathBuf)> {
        Some((
            FileSettings {
                server: server.map(str::to_owned),
                token: token.map(str::to_owned),
            },
            PathBuf::from("/home/me/.config/meridian/config.toml"),
        ))
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_the_file() {
        let all = resolve(
            layer(Some("http://flag:1"), Some("flag-token")),
            layer(Some("http://env:2"), Some("env-token")),
            file(Some("http://file:3"), Some("file-token")),
        )
        .expect("valid");
        assert_eq!(all.server, "http://flag:1");
        assert_eq!(all.token.as_ref().map(Token::expose), Some("flag-token"));

        let env = resolve(
            layer(None, None),
            layer(Some("http://env:2"), Some("env-token")),
            file(Some("http://file:3"), Some("file-token")),
        )
        .expect("valid");
        assert_eq!(env.server, "http://env:2");
        assert_eq!(env.server_source, Source::Env);
        assert_eq!(env.token.as_ref().map(Token::expose), Some("env-token"));

        let from_file = resolve(
            layer(None, None),
            layer(None, None),
            file(Some("https://file:3/"), Some("file-token")),
        )
        .expect("valid");
        assert_eq!(from_file.server, "https://file:3");
        assert!(matches!(from_file.token_source, Some(Source::File(_))));
    }

    #[test]
    fn each_setting_is_resolved_on_its_own() {
        let mixed = resolve(
            layer(Some("http://flag:1"), None),
            layer(None, None),
            file(None, Some("file-token")),
        )
        .expect("valid");
        assert_eq!(mixed.server, "http://flag:1");
        assert_eq!(mixed.token.as_ref().map(Token::expose), Some("file-token"));
    }

    #[test]
    fn nothing_set_means_the_local_default_server_and_no_token() {
        let none = resolve(layer(None, Some("  ")), layer(None, None), None).expect("valid");
        assert_eq!(none.server, DEFAULT_SERVER);
        assert_eq!(none.server_source, Source::Default);
        assert_eq!(none.token, None);
    }

    #[test]
    fn a_bare_host_and_port_means_http_and_other_schemes_are_refused() {
        let bare =
            resolve(layer(Some("127.0.0.1:9"), None), layer(None, None), None).expect("valid");
        assert_eq!(bare.server, "http://127.0.0.1:9");
        let ftp =
            resolve(layer(Some("ftp://x"), None), layer(None, None), None).expect_err("refused");
        assert_eq!(ftp.exit, super::super::exit::Exit::Usage);
        assert!(ftp.message.contains("http or https"), "{}", ftp.message);
    }

    #[test]
    fn the_file_may_be_toml_or_yaml_and_unknown_keys_are_refused() {
        let toml = parse_file(
            Path::new("config.toml"),
            "server = \"http://a:1\"\ntoken = \"t\"\n",
        )
        .expect("toml");
        assert_eq!(toml.server.as_deref(), Some("http://a:1"));
        let yaml = parse_file(Path::new("config.yaml"), "server: http://b:2\n").expect("yaml");
        assert_eq!(yaml.server.as_deref(), Some("http://b:2"));
        assert_eq!(
            parse_file(Path::new("config.yaml"), "").expect("empty"),
            FileSettings::default()
        );
        let typo = parse_file(Path::new("config.toml"), "sever = \"x\"\n").expect_err("typo");
        assert!(typo.message.contains("config.toml"), "{}", typo.message);
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let settings =
            resolve(layer(None, Some("s3cret")), layer(None, None), None).expect("valid");
        assert!(!format!("{settings:?}").contains("s3cret"));
    }
}

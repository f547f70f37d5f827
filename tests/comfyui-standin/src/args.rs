//! Command line parsing that behaves like ComfyUI's argparse parser.
//!
//! The option table is derived at run time from the recorded `--help` text (its
//! usage block), so every real ComfyUI flag is accepted with the right arity.

pub const HELP: &str = include_str!("../data/cli-help.txt");

#[derive(Clone, Copy, PartialEq, Debug)]
enum Nargs {
    Zero,
    One,
    Optional,
    ZeroOrMore,
    OneOrMore,
}

/// The flags the stand-in acts on. Everything else is accepted and ignored.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Args {
    /// The script path exactly as given (`main.py`): echoed in `system.argv`.
    pub script: String,
    /// argv after the interpreter: `[script, flags...]`.
    pub argv: Vec<String>,
    pub listen: String,
    pub port: u16,
    pub cuda_device: Option<u32>,
    pub default_device: Option<u32>,
    pub cpu: bool,
    pub base_directory: Option<String>,
    pub output_directory: Option<String>,
    pub temp_directory: Option<String>,
    pub input_directory: Option<String>,
    pub user_directory: Option<String>,
    pub enable_cors_header: Option<String>,
    pub log_stdout: bool,
}

/// How parsing ended when it did not produce [`Args`].
#[derive(Debug, PartialEq)]
pub enum Exit {
    /// `-h/--help`: print [`HELP`] to stdout, exit 0.
    Help,
    /// argparse error: the text after `main.py: error: `; exit 2.
    Error(String),
}

/// The `usage: ...` block of the help text (printed before argparse errors).
pub fn usage() -> &'static str {
    HELP.split("\n\n").next().unwrap_or(HELP)
}

fn specs() -> Vec<(String, Nargs)> {
    let u = usage();
    let mut out = vec![
        ("-h".to_string(), Nargs::Zero),
        ("--help".into(), Nargs::Zero),
    ];
    let b = u.as_bytes();
    let mut i = 0;
    loop {
        let a1 = u[i..].find("[--").map(|p| p + i + 1);
        let a2 = u[i..].find("| --").map(|p| p + i + 2);
        let p = match (a1, a2) {
            (Some(x), Some(y)) => x.min(y),
            (x, y) => match x.or(y) {
                Some(v) => v,
                None => break,
            },
        };
        let start = p + 2;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'-' || b[end] == b'_')
        {
            end += 1;
        }
        let name = format!("--{}", &u[start..end]);
        let rest = u[end..].trim_start_matches(' ');
        let nargs = if rest.starts_with(']') || rest.starts_with('|') {
            Nargs::Zero
        } else if rest.starts_with('[') && name != "--preview-method" {
            let inner = &rest[..rest.find(']').unwrap_or(rest.len())];
            if inner.contains("...") {
                Nargs::ZeroOrMore
            } else {
                Nargs::Optional
            }
        } else {
            // a metavar; "X [X ...]" means one or more
            let after = rest.split_once(' ').map(|x| x.1).unwrap_or("");
            let after = after.trim_start();
            if after.starts_with('[')
                && after[..after.find(']').unwrap_or(after.len())].contains("...")
            {
                Nargs::OneOrMore
            } else {
                Nargs::One
            }
        };
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((name, nargs));
        }
        i = end;
    }
    out
}

fn looks_like_value(s: &str) -> bool {
    !s.starts_with('-') || s.len() == 1 || s[1..].parse::<f64>().is_ok()
}

/// Parses `args` = everything after the executable (script path first).
pub fn parse(args: &[String]) -> Result<Args, Exit> {
    let specs = specs();
    let mut a = Args {
        listen: "127.0.0.1".into(),
        port: 8188,
        ..Default::default()
    };
    let Some(script) = args.first() else {
        return Err(Exit::Error(
            "the following arguments are required: script".into(),
        ));
    };
    a.script = script.clone();
    a.argv = args.to_vec();
    let mut unknown: Vec<String> = Vec::new();
    let mut i = 1;
    while i < args.len() {
        let raw = &args[i];
        i += 1;
        if !raw.starts_with('-') || raw == "-" || raw == "--" {
            unknown.push(raw.clone());
            continue;
        }
        let (flag, inline) = match raw.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (raw.clone(), None),
        };
        let found: Vec<&(String, Nargs)> = match specs.iter().find(|(n, _)| *n == flag) {
            Some(s) => vec![s],
            None if flag.starts_with("--") && flag.len() > 2 => {
                specs.iter().filter(|(n, _)| n.starts_with(&flag)).collect()
            }
            None => vec![],
        };
        let (name, nargs) = match found.as_slice() {
            [one] => (one.0.clone(), one.1),
            [] => {
                unknown.push(raw.clone());
                continue;
            }
            many => {
                let names: Vec<&str> = many.iter().map(|s| s.0.as_str()).collect();
                return Err(Exit::Error(format!(
                    "ambiguous option: {flag} could match {}",
                    names.join(", ")
                )));
            }
        };
        let mut values: Vec<String> = Vec::new();
        match (nargs, inline) {
            (Nargs::Zero, Some(v)) => {
                return Err(Exit::Error(format!(
                    "argument {name}: ignored explicit argument '{v}'"
                )))
            }
            (_, Some(v)) => values.push(v),
            (Nargs::Zero, None) => {}
            (Nargs::One, None) => match args.get(i) {
                Some(v) if looks_like_value(v) => {
                    values.push(v.clone());
                    i += 1;
                }
                _ => {
                    return Err(Exit::Error(format!(
                        "argument {name}: expected one argument"
                    )))
                }
            },
            (Nargs::Optional, None) => {
                if let Some(v) = args.get(i).filter(|v| looks_like_value(v)) {
                    values.push(v.clone());
                    i += 1;
                }
            }
            (Nargs::ZeroOrMore | Nargs::OneOrMore, None) => {
                while let Some(v) = args.get(i).filter(|v| looks_like_value(v)) {
                    values.push(v.clone());
                    i += 1;
                }
                if nargs == Nargs::OneOrMore && values.is_empty() {
                    return Err(Exit::Error(format!(
                        "argument {name}: expected at least one argument"
                    )));
                }
            }
        }
        let int = |v: &str| -> Result<u32, Exit> {
            v.trim()
                .parse::<u32>()
                .map_err(|_| Exit::Error(format!("argument {name}: invalid int value: '{v}'")))
        };
        let first = values.first().cloned();
        match name.as_str() {
            "-h" | "--help" => return Err(Exit::Help),
            "--listen" => a.listen = first.unwrap_or_else(|| "0.0.0.0".into()),
            "--port" => {
                let p = int(first.as_deref().unwrap_or(""))?;
                a.port = u16::try_from(p).map_err(|_| {
                    Exit::Error(format!("argument --port: invalid int value: '{p}'"))
                })?;
            }
            "--cuda-device" => a.cuda_device = Some(int(first.as_deref().unwrap_or(""))?),
            "--default-device" => a.default_device = Some(int(first.as_deref().unwrap_or(""))?),
            "--cpu" => a.cpu = true,
            "--base-directory" => a.base_directory = first,
            "--output-directory" => a.output_directory = first,
            "--temp-directory" => a.temp_directory = first,
            "--input-directory" => a.input_directory = first,
            "--user-directory" => a.user_directory = first,
            "--enable-cors-header" => {
                a.enable_cors_header = Some(first.unwrap_or_else(|| "*".into()))
            }
            "--log-stdout" => a.log_stdout = true,
            _ => {}
        }
    }
    if !unknown.is_empty() {
        return Err(Exit::Error(format!(
            "unrecognized arguments: {}",
            unknown.join(" ")
        )));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, Exit> {
        let v: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse(&v)
    }

    #[test]
    fn table_has_arities() {
        let s = specs();
        let get = |n: &str| s.iter().find(|x| x.0 == n).map(|x| x.1);
        assert_eq!(get("--listen"), Some(Nargs::Optional));
        assert_eq!(get("--port"), Some(Nargs::One));
        assert_eq!(get("--cpu"), Some(Nargs::Zero));
        assert_eq!(get("--extra-model-paths-config"), Some(Nargs::OneOrMore));
        assert_eq!(get("--fast"), Some(Nargs::ZeroOrMore));
        assert_eq!(get("--preview-method"), Some(Nargs::One));
        assert_eq!(get("--verbose"), Some(Nargs::Optional));
        assert_eq!(get("--database-url"), Some(Nargs::One));
        assert_eq!(get("--lowvram"), Some(Nargs::Zero));
        assert!(s.len() > 80, "{}", s.len());
    }

    #[test]
    fn parses_like_argparse() {
        let a = p(
            "main.py --listen --port=8190 --cpu --extra-model-paths-config a.yaml b.yaml --verbose",
        )
        .unwrap();
        assert_eq!((a.listen.as_str(), a.port, a.cpu), ("0.0.0.0", 8190, true));
        assert_eq!(p("main.py --listen 10.0.0.1").unwrap().listen, "10.0.0.1");
        assert_eq!(p("main.py --cuda-dev 1").unwrap().cuda_device, Some(1));
        assert_eq!(
            p("main.py --foo --bar"),
            Err(Exit::Error("unrecognized arguments: --foo --bar".into()))
        );
        assert_eq!(
            p("main.py --port"),
            Err(Exit::Error("argument --port: expected one argument".into()))
        );
        assert_eq!(
            p("main.py --port x"),
            Err(Exit::Error(
                "argument --port: invalid int value: 'x'".into()
            ))
        );
        assert_eq!(p("main.py -h"), Err(Exit::Help));
        assert!(usage().starts_with("usage: main.py [-h]"));
    }
}

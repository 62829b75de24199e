//! Key bindings as data: key-string parsing and the per-mode table of key → action.
//!
//! The defaults live in `assets/keymap.toml` (embedded), one entry per binding with its keys,
//! action name and description; `[ui.keymap.<mode>]` in the config file patches them (`"key" =
//! "action"`, or `"none"` to unbind). The same table drives key dispatch, the help overlay and the
//! footer, so they cannot disagree. Invariants checked when the table is built: every mode and
//! action in an override exists in the defaults for that mode, and every key string parses — so an
//! invalid binding is a config error at start-up, never a dead key at run time.

use std::collections::BTreeMap;
use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;

/// The embedded default bindings.
pub const DEFAULTS: &str = include_str!("../../assets/keymap.toml");

/// The action name that removes a binding in an override.
pub const UNBIND: &str = "none";

/// A key press, normalised so that the parsed form and the terminal's event compare equal:
/// characters carry their case instead of a shift modifier, and shift+tab is `BackTab`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    /// The key.
    pub code: KeyCode,
    /// Only ctrl, alt and shift are kept.
    pub mods: KeyModifiers,
}

impl Key {
    /// A key with no modifiers.
    pub fn plain(code: KeyCode) -> Self {
        Self::new(code, KeyModifiers::NONE)
    }

    /// A normalised key.
    pub fn new(code: KeyCode, mods: KeyModifiers) -> Self {
        let mut mods = mods & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        let mut code = code;
        match code {
            KeyCode::Char(c) => {
                // Terminals report "G" as shift+G; the character already says it.
                if mods.contains(KeyModifiers::SHIFT) {
                    code = KeyCode::Char(c.to_ascii_uppercase());
                }
                mods.remove(KeyModifiers::SHIFT);
            }
            KeyCode::BackTab => mods.remove(KeyModifiers::SHIFT),
            KeyCode::Tab if mods.contains(KeyModifiers::SHIFT) => {
                code = KeyCode::BackTab;
                mods.remove(KeyModifiers::SHIFT);
            }
            _ => {}
        }
        Self { code, mods }
    }

    /// The key of a terminal event.
    pub fn from_event(event: &KeyEvent) -> Self {
        Self::new(event.code, event.modifiers)
    }

    /// Parses `"j"`, `"G"`, `"enter"`, `"ctrl+d"`, `"shift+tab"`, `"f5"`, …
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the key is empty".to_owned());
        }
        let mut mods = KeyModifiers::NONE;
        let mut rest = text;
        // "+" alone and "ctrl++" name the plus key, so only split when something follows.
        while let Some((modifier, tail)) = rest.split_once('+')
            && !tail.is_empty()
            && !modifier.is_empty()
        {
            mods |= match modifier.to_ascii_lowercase().as_str() {
                "ctrl" | "control" => KeyModifiers::CONTROL,
                "alt" | "meta" => KeyModifiers::ALT,
                "shift" => KeyModifiers::SHIFT,
                other => return Err(format!("unknown modifier \"{other}\"")),
            };
            rest = tail;
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCode::Char(c),
            _ => named_key(&rest.to_ascii_lowercase())
                .ok_or_else(|| format!("unknown key name \"{rest}\""))?,
        };
        Ok(Self::new(code, mods))
    }
}

fn named_key(name: &str) -> Option<KeyCode> {
    Some(match name {
        "enter" | "return" => KeyCode::Enter,
        "esc" | "escape" => KeyCode::Esc,
        "tab" => KeyCode::Tab,
        "backtab" => KeyCode::BackTab,
        "backspace" => KeyCode::Backspace,
        "delete" | "del" => KeyCode::Delete,
        "insert" | "ins" => KeyCode::Insert,
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "pageup" | "pgup" => KeyCode::PageUp,
        "pagedown" | "pgdn" => KeyCode::PageDown,
        "space" => KeyCode::Char(' '),
        f if f.starts_with('f') => {
            let n: u8 = f.get(1..)?.parse().ok()?;
            if (1..=12).contains(&n) {
                KeyCode::F(n)
            } else {
                return None;
            }
        }
        _ => return None,
    })
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mods.contains(KeyModifiers::CONTROL) {
            f.write_str("ctrl+")?;
        }
        if self.mods.contains(KeyModifiers::ALT) {
            f.write_str("alt+")?;
        }
        if self.mods.contains(KeyModifiers::SHIFT) {
            f.write_str("shift+")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::BackTab => f.write_str("shift+tab"),
            KeyCode::Backspace => f.write_str("backspace"),
            KeyCode::Delete => f.write_str("delete"),
            KeyCode::Insert => f.write_str("insert"),
            KeyCode::Up => f.write_str("↑"),
            KeyCode::Down => f.write_str("↓"),
            KeyCode::Left => f.write_str("←"),
            KeyCode::Right => f.write_str("→"),
            KeyCode::Home => f.write_str("home"),
            KeyCode::End => f.write_str("end"),
            KeyCode::PageUp => f.write_str("pgup"),
            KeyCode::PageDown => f.write_str("pgdn"),
            KeyCode::F(n) => write!(f, "f{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// One binding: any of `keys` runs `action` in `mode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Mode name (`instances`, `filter`, …).
    pub mode: String,
    /// The keys; empty once every key was unbound (then it is not shown).
    pub keys: Vec<Key>,
    /// Action name, turned into an intent by the app.
    pub action: String,
    /// What the help overlay says.
    pub desc: String,
    /// The footer's short label, when the footer lists it.
    pub footer: Option<String>,
}

/// A key table that is wrong; becomes a config error with a hint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeymapError {
    /// The mode does not exist.
    #[error("ui.keymap.{mode} is not a mode")]
    UnknownMode {
        /// The mode given.
        mode: String,
        /// The modes there are.
        known: Vec<String>,
    },
    /// The key string does not parse.
    #[error("ui.keymap.{mode} binds \"{key}\", which is not a key: {reason}")]
    BadKey {
        /// Mode.
        mode: String,
        /// The key text.
        key: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The action does not exist in that mode.
    #[error(
        "ui.keymap.{mode} binds \"{key}\" to \"{action}\", which is not an action of this mode"
    )]
    UnknownAction {
        /// Mode.
        mode: String,
        /// Key text.
        key: String,
        /// The action given.
        action: String,
        /// The actions the mode has.
        known: Vec<String>,
    },
    /// The embedded defaults are broken (a build problem, caught by a unit test).
    #[error("the built-in key bindings are invalid: {0}")]
    Defaults(String),
}

impl KeymapError {
    /// How to fix it.
    pub fn hint(&self) -> String {
        match self {
            Self::UnknownMode { known, .. } => format!("modes are: {}", known.join(", ")),
            Self::BadKey { .. } => "write a character (\"j\", \"G\", \"/\"), a key name (enter, esc, tab, space, up, pageup, f5, …) with optional ctrl+/alt+/shift+ prefixes".to_owned(),
            Self::UnknownAction { known, .. } => {
                format!("actions of this mode are: {}, or \"{UNBIND}\" to unbind the key", known.join(", "))
            }
            Self::Defaults(_) => "this is a bug in ssmtui".to_owned(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsFile {
    bind: Vec<RawBinding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    mode: String,
    keys: Vec<String>,
    action: String,
    desc: String,
    #[serde(default)]
    footer: Option<String>,
}

/// The effective key table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keymap {
    bindings: Vec<Binding>,
}

impl Keymap {
    /// The built-in bindings.
    pub fn defaults() -> Result<Self, KeymapError> {
        let file: DefaultsFile =
            toml::from_str(DEFAULTS).map_err(|e| KeymapError::Defaults(e.to_string()))?;
        let mut bindings = Vec::with_capacity(file.bind.len());
        for raw in file.bind {
            let keys = raw
                .keys
                .iter()
                .map(|k| Key::parse(k).map_err(|e| KeymapError::Defaults(format!("{k}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            bindings.push(Binding {
                mode: raw.mode,
                keys,
                action: raw.action,
                desc: raw.desc,
                footer: raw.footer,
            });
        }
        Ok(Self { bindings })
    }

    /// The defaults patched by `[ui.keymap]`: mode → key string → action name (or `"none"`).
    pub fn with_overrides(
        overrides: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Self, KeymapError> {
        let mut map = Self::defaults()?;
        let modes = map.modes();
        let mut parsed = Vec::new();
        for (mode, keys) in overrides {
            if !modes.contains(mode) {
                return Err(KeymapError::UnknownMode {
                    mode: mode.clone(),
                    known: modes,
                });
            }
            let actions = map.actions(mode);
            for (key_text, action) in keys {
                let key = Key::parse(key_text).map_err(|reason| KeymapError::BadKey {
                    mode: mode.clone(),
                    key: key_text.clone(),
                    reason,
                })?;
                if action != UNBIND && !actions.contains(action) {
                    return Err(KeymapError::UnknownAction {
                        mode: mode.clone(),
                        key: key_text.clone(),
                        action: action.clone(),
                        known: actions,
                    });
                }
                parsed.push((mode.clone(), key, action.clone()));
            }
        }
        // Remove every overridden key first, so the order of entries does not matter.
        for (mode, key, _) in &parsed {
            for b in map.bindings.iter_mut().filter(|b| &b.mode == mode) {
                b.keys.retain(|k| k != key);
            }
        }
        for (mode, key, action) in parsed {
            if let Some(b) = map
                .bindings
                .iter_mut()
                .find(|b| b.mode == mode && b.action == action)
            {
                b.keys.push(key);
            }
        }
        Ok(map)
    }

    /// The action bound to `key` in `mode`.
    pub fn lookup(&self, mode: &str, key: Key) -> Option<&str> {
        self.bindings
            .iter()
            .find(|b| b.mode == mode && b.keys.contains(&key))
            .map(|b| b.action.as_str())
    }

    /// The visible bindings of `mode`, in table order.
    pub fn bindings<'a>(&'a self, mode: &'a str) -> impl Iterator<Item = &'a Binding> + 'a {
        self.bindings
            .iter()
            .filter(move |b| b.mode == mode && !b.keys.is_empty())
    }

    /// Every binding, in table order.
    pub fn all(&self) -> &[Binding] {
        &self.bindings
    }

    /// The first key bound to `action` in `mode`, for messages like "press ? for help".
    pub fn key_for(&self, mode: &str, action: &str) -> Option<Key> {
        self.bindings
            .iter()
            .find(|b| b.mode == mode && b.action == action)
            .and_then(|b| b.keys.first().copied())
    }

    /// Mode names, in table order.
    pub fn modes(&self) -> Vec<String> {
        let mut modes: Vec<String> = Vec::new();
        for b in &self.bindings {
            if !modes.contains(&b.mode) {
                modes.push(b.mode.clone());
            }
        }
        modes
    }

    /// Action names of a mode.
    pub fn actions(&self, mode: &str) -> Vec<String> {
        let mut actions: Vec<String> = Vec::new();
        for b in self.bindings.iter().filter(|b| b.mode == mode) {
            if !actions.contains(&b.action) {
                actions.push(b.action.clone());
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_strings_parse_and_print_back() {
        for (text, shown) in [
            ("j", "j"),
            ("G", "G"),
            ("shift+g", "G"),
            ("ctrl+q", "ctrl+q"),
            ("ctrl+Q", "ctrl+Q"),
            ("shift+tab", "shift+tab"),
            ("f5", "f5"),
            ("enter", "enter"),
            ("Esc", "esc"),
            ("/", "/"),
            ("+", "+"),
            ("ctrl++", "ctrl++"),
            ("alt+x", "alt+x"),
            ("space", "space"),
            ("pgdn", "pgdn"),
        ] {
            let key = Key::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(key.to_string(), shown, "{text}");
        }
        for bad in ["", "f13", "f0", "hyper+x", "enterr", "ctrl+", "ctrl+nope"] {
            assert!(Key::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn terminal_events_match_parsed_keys() {
        let event = KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&event), Key::parse("G").unwrap());
        let event = KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&event), Key::parse("shift+tab").unwrap());
        let event = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(Key::from_event(&event), Key::parse("ctrl+c").unwrap());
    }

    #[test]
    fn defaults_parse_and_have_no_duplicate_keys_per_mode() {
        let map = Keymap::defaults().unwrap();
        for mode in map.modes() {
            let mut seen = Vec::new();
            for b in map.bindings(&mode) {
                for k in &b.keys {
                    assert!(!seen.contains(k), "{mode}: {k} bound twice");
                    seen.push(*k);
                }
            }
        }
    }

    #[test]
    fn overrides_rebind_unbind_and_keep_descriptions() {
        let overrides = BTreeMap::from([(
            "instances".to_owned(),
            BTreeMap::from([
                ("ctrl+r".to_owned(), "refresh".to_owned()),
                ("r".to_owned(), "none".to_owned()),
                ("q".to_owned(), "details".to_owned()),
            ]),
        )]);
        let map = Keymap::with_overrides(&overrides).unwrap();
        let ctrl_r = Key::parse("ctrl+r").unwrap();
        assert_eq!(map.lookup("instances", ctrl_r), Some("refresh"));
        assert_eq!(map.lookup("instances", Key::parse("r").unwrap()), None);
        assert_eq!(
            map.lookup("instances", Key::parse("q").unwrap()),
            Some("details")
        );
        // Other modes are untouched.
        assert_eq!(
            map.lookup("sessions", Key::parse("r").unwrap()),
            Some("refresh")
        );
        let refresh = map
            .bindings("instances")
            .find(|b| b.action == "refresh")
            .unwrap();
        assert_eq!(refresh.desc, "reload the instance list");
        assert_eq!(refresh.keys, vec![ctrl_r]);
    }

    #[test]
    fn invalid_overrides_are_errors_with_hints() {
        let one = |mode: &str, key: &str, action: &str| {
            BTreeMap::from([(
                mode.to_owned(),
                BTreeMap::from([(key.to_owned(), action.to_owned())]),
            )])
        };
        let err = Keymap::with_overrides(&one("nowhere", "x", "quit")).unwrap_err();
        assert!(matches!(err, KeymapError::UnknownMode { .. }));
        assert!(err.hint().contains("instances"), "{}", err.hint());

        let err = Keymap::with_overrides(&one("instances", "ctrl+nope", "quit")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ui.keymap.instances binds \"ctrl+nope\", which is not a key: unknown key name \"nope\""
        );

        let err = Keymap::with_overrides(&one("filter", "x", "terminate")).unwrap_err();
        assert!(matches!(err, KeymapError::UnknownAction { .. }));
        assert!(err.hint().contains("accept"), "{}", err.hint());
    }
}

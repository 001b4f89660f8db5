//! ACL entries: CodeDeploy's grammar `[d|default:][u|user|g|group|m|mask|o|other:]name:perms`
//! (`spec/ace_info.rb`), with the same rules and one error kind per rule.

use super::model::{AclEntry, AclTag};
use super::problem::ProblemKind;

fn tag_of(part: &str) -> Option<AclTag> {
    match part {
        "u" | "user" => Some(AclTag::User),
        "g" | "group" => Some(AclTag::Group),
        "m" | "mask" => Some(AclTag::Mask),
        "o" | "other" => Some(AclTag::Other),
        _ => None,
    }
}

fn is_default_marker(part: &str) -> bool {
    part == "d" || part == "default"
}

/// Parse one entry as written in the AppSpec.
pub(crate) fn parse_acl(text: &str) -> Result<AclEntry, (ProblemKind, String)> {
    let invalid = |kind, why: &str| Err((kind, format!("invalid acl entry `{text}`: {why}")));
    // Read from the right, as CodeDeploy does: perms, name, tag, default marker.
    let parts: Vec<&str> = text.split(':').rev().collect();
    if parts.len() < 2 {
        return invalid(ProblemKind::AclParts, "expected at least `name:perms`");
    }
    if parts.len() > 4 {
        return invalid(
            ProblemKind::AclParts,
            "expected at most `default:tag:name:perms`",
        );
    }
    let mut default = false;
    if parts.len() == 4 {
        if !is_default_marker(parts[3]) {
            return invalid(
                ProblemKind::AclInvalidTag,
                "the first of four parts must be `d` or `default`",
            );
        }
        default = true;
    }
    let mut tag = None;
    if parts.len() >= 3 {
        if is_default_marker(parts[2]) {
            if default {
                return invalid(ProblemKind::AclInvalidTag, "`default` given twice");
            }
            default = true;
        } else {
            match tag_of(parts[2]) {
                Some(t) => tag = Some(t),
                None => {
                    return invalid(
                        ProblemKind::AclInvalidTag,
                        "expected a tag u|user|g|group|m|mask|o|other before the name",
                    );
                }
            }
        }
    }
    let mut name = String::new();
    match (tag_of(parts[1]), tag) {
        // `m:7`, `other:r`: the name part is the tag.
        (Some(t @ (AclTag::Mask | AclTag::Other)), None) => tag = Some(t),
        _ => name = parts[1].to_owned(),
    }
    let tag = tag.unwrap_or(AclTag::User);
    if matches!(tag, AclTag::Mask | AclTag::Other) && !name.is_empty() {
        return invalid(
            ProblemKind::AclNamedMaskOrOther,
            "mask and other entries take no name",
        );
    }
    if !default && tag != AclTag::Mask && name.is_empty() {
        return invalid(
            ProblemKind::AclBaseEntry,
            "base entries (no user or group name) are set with `mode`, not `acls`",
        );
    }
    let perms = parse_perms(parts[0]).ok_or_else(|| {
        let bad = parts[0].chars().find(|c| !"rwx-".contains(*c)).unwrap_or(' ');
        (
            ProblemKind::AclInvalidPermission,
            format!(
                "acl entry `{text}` contains an invalid character `{bad}`; expected one octal digit or characters of `rwx-`"
            ),
        )
    })?;
    Ok(AclEntry {
        default,
        tag,
        name,
        perms,
    })
}

fn parse_perms(text: &str) -> Option<u8> {
    let mut chars = text.chars();
    if let (Some(c @ '0'..='7'), None) = (chars.next(), chars.next()) {
        return Some(c as u8 - b'0');
    }
    text.chars().try_fold(0u8, |bits, c| match c {
        'r' => Some(bits | 4),
        'w' => Some(bits | 2),
        'x' => Some(bits | 1),
        '-' => Some(bits),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Option<ProblemKind> {
        parse_acl(text).err().map(|(k, _)| k)
    }

    fn entry(default: bool, tag: AclTag, name: &str, perms: u8) -> AclEntry {
        AclEntry {
            default,
            tag,
            name: name.to_owned(),
            perms,
        }
    }

    #[test]
    fn codedeploy_ace_errors() {
        assert_eq!(kind("7"), Some(ProblemKind::AclParts));
        assert_eq!(kind("d:u:bob:7:rwx"), Some(ProblemKind::AclParts));
        assert_eq!(kind("x:u:bob:7"), Some(ProblemKind::AclInvalidTag));
        assert_eq!(kind("d:x:bob:7"), Some(ProblemKind::AclInvalidTag));
        assert_eq!(kind("d:d:bob:7"), Some(ProblemKind::AclInvalidTag));
        assert_eq!(kind("mask:name:7"), Some(ProblemKind::AclNamedMaskOrOther));
        assert_eq!(
            kind("d:other:name:7"),
            Some(ProblemKind::AclNamedMaskOrOther)
        );
        assert_eq!(kind("u:bob:rwxd"), Some(ProblemKind::AclInvalidPermission));
        assert_eq!(kind("u::rwx"), Some(ProblemKind::AclBaseEntry));
        assert_eq!(kind("g::7"), Some(ProblemKind::AclBaseEntry));
    }

    #[test]
    fn valid_aces_decode() {
        assert_eq!(
            parse_acl("d:u:bob:7"),
            Ok(entry(true, AclTag::User, "bob", 7))
        );
        assert_eq!(
            parse_acl("default:group:ops:r-x"),
            Ok(entry(true, AclTag::Group, "ops", 5))
        );
        assert_eq!(
            parse_acl("u:henry:7"),
            Ok(entry(false, AclTag::User, "henry", 7))
        );
        assert_eq!(
            parse_acl("d:g:manager:rw"),
            Ok(entry(true, AclTag::Group, "manager", 6))
        );
        assert_eq!(parse_acl("bob:0"), Ok(entry(false, AclTag::User, "bob", 0)));
        assert_eq!(parse_acl("m:7"), Ok(entry(false, AclTag::Mask, "", 7)));
        assert_eq!(parse_acl("mask:"), Ok(entry(false, AclTag::Mask, "", 0)));
        assert_eq!(parse_acl("d:u::rwx"), Ok(entry(true, AclTag::User, "", 7)));
        // `other` is a base entry: CodeDeploy asks for `mode` instead.
        assert_eq!(kind("o:r"), Some(ProblemKind::AclBaseEntry));
    }
}

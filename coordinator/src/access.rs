//! Who may do what: the permission a route needs ([`Need`]) and the one decision ([`decide`]) of whether an
//! operator's role allows it, with the refusal's message. Pure: no I/O, no HTTP (the route table that says which
//! route needs what, and the middleware that applies it, are `api::guard`).

use crate::auth::Operator;
use rollcage_proto::access::Role;

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing: the API description and the dashboard's files (they hold no data).
    Public,
    /// The route authenticates its callers itself with tokens that are not operators' (agent and enrollment
    /// tokens on `/v1/agent/*`; the scrape token or an admin on `/metrics`).
    Own,
    /// Any operator: viewers, deployers and admins read everything but the audit trail.
    Read,
    /// A deployer of the route's application, or an admin.
    Deploy,
    /// An admin.
    Admin,
}

/// How a role is described in a refusal: `viewer`, `deployer for app1, app2`, `deployer for no application`,
/// `admin`.
pub fn describe(op: &Operator) -> String {
    match op.role {
        Role::Deployer if op.apps.is_empty() => "deployer for no application".to_owned(),
        Role::Deployer => format!("deployer for {}", op.apps.join(", ")),
        r => r.name().to_owned(),
    }
}

/// Whether `op` may do what needs `need`, on application `app` when the route has one (`what`: the action in
/// words, e.g. `stop deployments`, for the refusal). `Err` is the refusal's message, naming the token, its role
/// and what it lacks.
pub fn decide(op: &Operator, need: Need, app: Option<&str>, what: &str) -> Result<(), String> {
    let refuse = |lacks: String| {
        Err(format!(
            "token `{}` ({}) may not {what}{lacks}",
            op.name,
            describe(op)
        ))
    };
    match (need, op.role) {
        (Need::Public | Need::Own | Need::Read, _) | (_, Role::Admin) => Ok(()),
        (Need::Admin, _) => refuse(": it needs the admin role".to_owned()),
        (Need::Deploy, Role::Viewer) => refuse(": it needs the deployer or admin role".to_owned()),
        (Need::Deploy, Role::Deployer) => match app {
            Some(a) if op.apps.iter().any(|x| x == a) => Ok(()),
            Some(a) => refuse(format!(" of {a}")),
            // A deploy route whose application could not be told (an unknown deployment, say) is left to the
            // handler's own 404 or 400 only for admins: a deployer is refused.
            None => refuse(": the request names no application it may deploy".to_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(role: Role, apps: &[&str]) -> Operator {
        Operator {
            name: "ci".into(),
            role,
            apps: apps.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn each_role_gets_exactly_its_permissions() {
        let viewer = op(Role::Viewer, &[]);
        let deployer = op(Role::Deployer, &["app1"]);
        let nobody = op(Role::Deployer, &[]);
        let admin = op(Role::Admin, &[]);
        for o in [&viewer, &deployer, &nobody, &admin] {
            assert!(decide(o, Need::Read, None, "read").is_ok());
        }
        assert!(decide(&admin, Need::Admin, None, "create tokens").is_ok());
        assert!(decide(&admin, Need::Deploy, Some("any"), "deploy").is_ok());
        assert!(decide(&deployer, Need::Deploy, Some("app1"), "deploy").is_ok());
        assert_eq!(
            decide(&deployer, Need::Deploy, Some("app2"), "stop deployments"),
            Err("token `ci` (deployer for app1) may not stop deployments of app2".into())
        );
        assert!(decide(&nobody, Need::Deploy, Some("app1"), "deploy").is_err());
        assert!(decide(&deployer, Need::Deploy, None, "deploy").is_err());
        assert!(decide(&deployer, Need::Admin, None, "create tokens").is_err());
        let e = decide(&viewer, Need::Deploy, Some("app1"), "stop deployments");
        assert!(e.is_err_and(|m| m.contains("(viewer)") && m.contains("deployer or admin")));
    }
}

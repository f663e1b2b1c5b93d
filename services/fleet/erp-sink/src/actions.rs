//! The action a model's commands end with. Odoo names them per model: a
//! quotation is confirmed by `sale.order.action_confirm` and cancelled by
//! `action_cancel`, an invoice posted by `account.move.action_post` and
//! cancelled by `button_cancel`. Given as `model=method` flags, so a model
//! the sink was not built for takes no rebuild.

use crate::odoo::is_name;

/// A model and one of its methods (`account.move=action_post`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMethod {
    /// The model (`account.move`).
    pub model: String,
    /// The method called on its record (`action_post`).
    pub method: String,
}

impl ModelMethod {
    /// `model=method`, or `model` alone for `default`.
    fn parse(text: &str, default: &str) -> Result<Self, String> {
        let (model, method) = text.split_once('=').unwrap_or((text, default));
        let (model, method) = (model.trim(), method.trim());
        if !is_name(model) {
            return Err(format!(
                "model {model:?}: expected an Odoo model name ([a-z0-9_.], as account.move=action_post)"
            ));
        }
        // odoo/service/model.py refuses to call a private method remotely.
        if !is_name(method) || method.contains('.') || method.starts_with('_') {
            return Err(format!(
                "method {method:?}: expected a public Odoo method name ([a-z0-9_], not starting with _)"
            ));
        }
        Ok(Self {
            model: model.to_owned(),
            method: method.to_owned(),
        })
    }

    /// For `--confirm-on-create`: `model[=method]`, `action_confirm` by
    /// default.
    pub fn confirming(text: &str) -> Result<Self, String> {
        Self::parse(text, "action_confirm")
    }

    /// For `--cancel-with`: `model=method`.
    pub fn cancelling(text: &str) -> Result<Self, String> {
        if !text.contains('=') {
            return Err(format!(
                "{text:?}: expected model=method (account.move=button_cancel)"
            ));
        }
        Self::parse(text, "action_cancel")
    }

    /// The method `list` names for `model`.
    pub fn of<'a>(list: &'a [Self], model: &str) -> Option<&'a str> {
        list.iter()
            .find(|entry| entry.model == model)
            .map(|entry| entry.method.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_takes_its_method_or_the_default_and_a_bad_name_is_refused() {
        let confirm = ModelMethod::confirming("sale.order").unwrap();
        assert_eq!(confirm.method, "action_confirm");
        let post = ModelMethod::confirming("account.move=action_post").unwrap();
        assert_eq!(
            (post.model.as_str(), post.method.as_str()),
            ("account.move", "action_post")
        );
        assert_eq!(
            ModelMethod::of(&[confirm, post], "account.move"),
            Some("action_post")
        );
        for wrong in [
            "",
            "Sale.Order",
            "sale.order=_action_confirm",
            "a=b.c",
            "x=../y",
        ] {
            assert!(ModelMethod::confirming(wrong).is_err(), "{wrong:?} taken");
        }
        assert!(ModelMethod::cancelling("account.move").is_err());
        assert!(ModelMethod::cancelling("account.move=button_cancel").is_ok());
    }
}

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

/// A flag's list of models and their methods, each model once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelMethods(Vec<ModelMethod>);

impl ModelMethods {
    /// For `--confirm-on-create`: `model[=method],…`, `action_confirm`
    /// where a model is given alone.
    pub fn confirming(text: &str) -> Result<Self, String> {
        Self::parse(text, Some("action_confirm"))
    }

    /// For `--cancel-with`: `model=method,…`.
    pub fn cancelling(text: &str) -> Result<Self, String> {
        Self::parse(text, None)
    }

    fn parse(text: &str, default: Option<&str>) -> Result<Self, String> {
        let mut list: Vec<ModelMethod> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (model, method) = match (entry.split_once('='), default) {
                (Some((model, method)), _) => (model.trim(), method.trim()),
                (None, Some(default)) => (entry, default),
                (None, None) => {
                    return Err(format!(
                        "{entry:?}: expected model=method (account.move=button_cancel)"
                    ));
                }
            };
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
            if list.iter().any(|named| named.model == model) {
                return Err(format!("model {model:?} is named twice"));
            }
            list.push(ModelMethod {
                model: model.to_owned(),
                method: method.to_owned(),
            });
        }
        Ok(Self(list))
    }

    /// `model=method` alone.
    pub(crate) fn single(model: &str, method: &str) -> Self {
        Self(vec![ModelMethod {
            model: model.to_owned(),
            method: method.to_owned(),
        }])
    }

    /// The method named for `model`.
    pub fn of(&self, model: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|named| named.model == model)
            .map(|named| named.method.as_str())
    }

    /// The models named.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|named| named.model.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_takes_its_method_or_the_default_and_a_bad_list_is_refused() {
        let confirm = ModelMethods::confirming("sale.order, account.move=action_post").unwrap();
        assert_eq!(confirm.of("sale.order"), Some("action_confirm"));
        assert_eq!(confirm.of("account.move"), Some("action_post"));
        assert_eq!(confirm.of("res.partner"), None);
        assert_eq!(
            ModelMethods::cancelling("").unwrap(),
            ModelMethods::default()
        );
        let refused = [
            "Sale.Order",
            "sale.order=_action_confirm",
            "a=b.c",
            "x=../y",
            "account.move=",
            "=action_post",
            "account.move=action_post,account.move=button_draft",
        ];
        for wrong in refused {
            assert!(ModelMethods::confirming(wrong).is_err(), "{wrong:?} taken");
        }
        assert!(ModelMethods::cancelling("account.move").is_err());
        let cancel = ModelMethods::cancelling("account.move=button_cancel").unwrap();
        assert_eq!(cancel.models().collect::<Vec<_>>(), ["account.move"]);
    }
}

//! The models the sinks touch, as Odoo 17/18 declare them: the field names,
//! types, labels and the attributes the ORM acts on. Taken from odoo/odoo's
//! addons/sale/models/sale_order.py and sale_order_line.py,
//! addons/account/models/account_move.py and account_move_line.py,
//! odoo/addons/base/models/res_partner.py and addons/product/models; fields
//! no sink uses are left out (a client asking for one gets Odoo's
//! "Invalid field" answer, as it would for a module that is not installed).

/// A field's type, as `fields_get` names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `fields.Char`.
    Char,
    /// `fields.Text`.
    Text,
    /// `fields.Html`.
    Html,
    /// `fields.Integer`.
    Integer,
    /// `fields.Float`.
    Float,
    /// `fields.Monetary`.
    Monetary,
    /// `fields.Boolean`.
    Boolean,
    /// `fields.Date` (`%Y-%m-%d`).
    Date,
    /// `fields.Datetime` (`%Y-%m-%d %H:%M:%S`, UTC).
    Datetime,
    /// `fields.Selection`: (value, label).
    Selection(&'static [(&'static str, &'static str)]),
    /// `fields.Many2one` to a model, written as an id.
    Many2one(&'static str),
    /// `fields.One2many`: the lines' model and their many2one back.
    One2many(&'static str, &'static str),
}

impl Kind {
    /// The type's name in `fields_get`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Char => "char",
            Self::Text => "text",
            Self::Html => "html",
            Self::Integer => "integer",
            Self::Float => "float",
            Self::Monetary => "monetary",
            Self::Boolean => "boolean",
            Self::Date => "date",
            Self::Datetime => "datetime",
            Self::Selection(_) => "selection",
            Self::Many2one(_) => "many2one",
            Self::One2many(..) => "one2many",
        }
    }
}

/// One field of a model.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Technical name.
    pub name: &'static str,
    /// Label (`string=`), used in Odoo's messages.
    pub string: &'static str,
    /// Type.
    pub kind: Kind,
    /// `required=True`: NOT NULL in the table.
    pub required: bool,
    /// Computed and stored without an inverse (`amount_total`): whatever is
    /// written, the ORM recomputes it from its dependencies.
    pub computed: bool,
    /// `readonly=True` (a UI attribute: the ORM still writes it).
    pub readonly: bool,
}

const fn field(name: &'static str, string: &'static str, kind: Kind) -> Field {
    Field {
        name,
        string,
        kind,
        required: false,
        computed: false,
        readonly: false,
    }
}

impl Field {
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }

    const fn computed(mut self) -> Self {
        self.computed = true;
        self.readonly = true;
        self
    }

    const fn readonly(mut self) -> Self {
        self.readonly = true;
        self
    }
}

/// A model.
#[derive(Debug)]
pub struct Model {
    /// `_name`.
    pub name: &'static str,
    /// `_description`, used in Odoo's messages.
    pub description: &'static str,
    /// Its fields (besides `id`).
    pub fields: &'static [Field],
}

impl Model {
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The SQL table (`sale.order` → `sale_order`), for constraint names.
    pub fn table(&self) -> String {
        self.name.replace('.', "_")
    }
}

/// sale_order.py's SALE_ORDER_STATE.
pub const SALE_ORDER_STATE: &[(&str, &str)] = &[
    ("draft", "Quotation"),
    ("sent", "Quotation Sent"),
    ("sale", "Sales Order"),
    ("cancel", "Cancelled"),
];

const INVOICE_STATUS: &[(&str, &str)] = &[
    ("upselling", "Upselling Opportunity"),
    ("invoiced", "Fully Invoiced"),
    ("to invoice", "To Invoice"),
    ("no", "Nothing to Invoice"),
];

use Kind::{
    Boolean, Char, Date, Datetime, Float, Html, Integer, Many2one, Monetary, One2many, Selection,
    Text,
};

/// `sale.order` (addons/sale/models/sale_order.py), with the two custom
/// fields a Sluice deployment adds (Studio or a small module: custom
/// fields are `x_`-prefixed), which erp-sink keeps its references in.
pub const SALE_ORDER: Model = Model {
    name: "sale.order",
    description: "Sales Order",
    fields: &[
        field("name", "Order Reference", Char).required(),
        field("display_name", "Display Name", Char).computed(),
        field("company_id", "Company", Many2one("res.company")).required(),
        field("partner_id", "Customer", Many2one("res.partner")).required(),
        field("state", "Status", Selection(SALE_ORDER_STATE)).readonly(),
        field("locked", "Locked", Boolean),
        field("client_order_ref", "Customer Reference", Char),
        field("origin", "Source Document", Char),
        field("reference", "Payment Ref.", Char),
        field("date_order", "Order Date", Datetime).required(),
        field("commitment_date", "Delivery Date", Datetime),
        field("validity_date", "Expiration", Date),
        field("note", "Terms and conditions", Html),
        field(
            "partner_invoice_id",
            "Invoice Address",
            Many2one("res.partner"),
        )
        .required(),
        field(
            "partner_shipping_id",
            "Delivery Address",
            Many2one("res.partner"),
        )
        .required(),
        field("currency_id", "Currency", Many2one("res.currency")).computed(),
        field(
            "order_line",
            "Order Lines",
            One2many("sale.order.line", "order_id"),
        ),
        field("amount_untaxed", "Untaxed Amount", Monetary).computed(),
        field("amount_tax", "Taxes", Monetary).computed(),
        field("amount_total", "Total", Monetary).computed(),
        field(
            "invoice_status",
            "Invoice Status",
            Selection(INVOICE_STATUS),
        )
        .computed(),
        field("x_sluice_external_ref", "Sluice external reference", Char),
        field("x_sluice_commands", "Sluice applied commands", Text),
    ],
};

/// `sale.order.line` (addons/sale/models/sale_order_line.py).
pub const SALE_ORDER_LINE: Model = Model {
    name: "sale.order.line",
    description: "Sales Order Line",
    fields: &[
        field("order_id", "Order Reference", Many2one("sale.order")).required(),
        field("display_name", "Display Name", Char).computed(),
        field("sequence", "Sequence", Integer),
        field("company_id", "Company", Many2one("res.company")).computed(),
        field("currency_id", "Currency", Many2one("res.currency")).computed(),
        field("order_partner_id", "Customer", Many2one("res.partner")).computed(),
        field("state", "Order Status", Selection(SALE_ORDER_STATE)).computed(),
        field(
            "display_type",
            "Display Type",
            Selection(&[("line_section", "Section"), ("line_note", "Note")]),
        ),
        field("product_id", "Product", Many2one("product.product")),
        field("name", "Description", Text).required(),
        field("product_uom_qty", "Quantity", Float).required(),
        field("price_unit", "Unit Price", Float).required(),
        field("discount", "Discount (%)", Float),
        field("price_subtotal", "Subtotal", Monetary).computed(),
        field("price_tax", "Total Tax", Float).computed(),
        field("price_total", "Total", Monetary).computed(),
    ],
};

/// account_move.py's `state`.
pub const MOVE_STATE: &[(&str, &str)] = &[
    ("draft", "Draft"),
    ("posted", "Posted"),
    ("cancel", "Cancelled"),
];

/// account_move.py's `move_type`.
pub const MOVE_TYPE: &[(&str, &str)] = &[
    ("entry", "Journal Entry"),
    ("out_invoice", "Customer Invoice"),
    ("out_refund", "Customer Credit Note"),
    ("in_invoice", "Vendor Bill"),
    ("in_refund", "Vendor Credit Note"),
    ("out_receipt", "Sales Receipt"),
    ("in_receipt", "Purchase Receipt"),
];

/// `account.move` (addons/account/models/account_move.py), with the two
/// custom fields of a Sluice deployment. Its journal is left out (the
/// sandbox keeps one sale journal and no chart of accounts): `journal_id`
/// is computed from the move type when not given, and no sink gives it.
pub const ACCOUNT_MOVE: Model = Model {
    name: "account.move",
    description: "Journal Entry",
    fields: &[
        // Computed but writable (readonly=False): "/" until posted.
        field("name", "Number", Char),
        field("display_name", "Display Name", Char).computed(),
        field("move_type", "Type", Selection(MOVE_TYPE))
            .required()
            .readonly(),
        field("state", "Status", Selection(MOVE_STATE))
            .required()
            .readonly(),
        field("partner_id", "Partner", Many2one("res.partner")),
        field("company_id", "Company", Many2one("res.company")).computed(),
        field("currency_id", "Currency", Many2one("res.currency")).required(),
        field("date", "Date", Date).required(),
        field("invoice_date", "Invoice/Bill Date", Date),
        field("invoice_date_due", "Due Date", Date),
        field("ref", "Reference", Char),
        field("payment_reference", "Payment Reference", Char),
        field("invoice_origin", "Origin", Char).readonly(),
        field("narration", "Terms and Conditions", Html),
        field(
            "invoice_line_ids",
            "Invoice lines",
            One2many("account.move.line", "move_id"),
        ),
        field("amount_untaxed", "Untaxed Amount", Monetary).computed(),
        field("amount_tax", "Tax", Monetary).computed(),
        field("amount_total", "Total", Monetary).computed(),
        field("amount_residual", "Amount Due", Monetary).computed(),
        field(
            "payment_state",
            "Payment Status",
            Selection(&[
                ("not_paid", "Not Paid"),
                ("in_payment", "In Payment"),
                ("paid", "Paid"),
                ("partial", "Partially Paid"),
                ("reversed", "Reversed"),
                ("invoicing_legacy", "Invoicing App Legacy"),
            ]),
        )
        .computed(),
        field("x_sluice_external_ref", "Sluice external reference", Char),
        field("x_sluice_commands", "Sluice applied commands", Text),
    ],
};

/// `account.move.line` (addons/account/models/account_move_line.py): the
/// invoice lines, without the accounts and taxes the sandbox does not keep.
pub const ACCOUNT_MOVE_LINE: Model = Model {
    name: "account.move.line",
    description: "Journal Item",
    fields: &[
        field("move_id", "Journal Entry", Many2one("account.move")).required(),
        field("display_name", "Display Name", Char).computed(),
        field("sequence", "Sequence", Integer),
        field(
            "display_type",
            "Display Type",
            Selection(&[
                ("product", "Product"),
                ("line_section", "Section"),
                ("line_note", "Note"),
            ]),
        )
        .required(),
        field("product_id", "Product", Many2one("product.product")),
        // Computed from the product but writable.
        field("name", "Label", Char),
        field("quantity", "Quantity", Float),
        field("price_unit", "Unit Price", Float),
        field("discount", "Discount (%)", Float),
        field("price_subtotal", "Subtotal", Monetary).computed(),
        field("price_total", "Total", Monetary).computed(),
    ],
};

/// `res.partner` (odoo/addons/base/models/res_partner.py), with erp-sink's
/// two custom fields, as a deployment that upserts contacts adds them.
pub const RES_PARTNER: Model = Model {
    name: "res.partner",
    description: "Contact",
    fields: &[
        field("name", "Name", Char),
        field("display_name", "Display Name", Char).computed(),
        field("email", "Email", Char),
        field("phone", "Phone", Char),
        field("ref", "Reference", Char),
        field("is_company", "Is a Company", Boolean),
        field("active", "Active", Boolean),
        field(
            "type",
            "Address Type",
            Selection(&[
                ("contact", "Contact"),
                ("invoice", "Invoice Address"),
                ("delivery", "Delivery Address"),
                ("other", "Other Address"),
            ]),
        ),
        field("company_id", "Company", Many2one("res.company")),
        field("customer_rank", "Customer Rank", Integer),
        field("x_sluice_external_ref", "Sluice external reference", Char),
        field("x_sluice_commands", "Sluice applied commands", Text),
    ],
};

/// `product.product` (addons/product/models/product_product.py, with the
/// template's fields it inherits by delegation).
pub const PRODUCT_PRODUCT: Model = Model {
    name: "product.product",
    description: "Product Variant",
    fields: &[
        field("name", "Name", Char).required(),
        field("display_name", "Display Name", Char).computed(),
        field("default_code", "Internal Reference", Char),
        field("barcode", "Barcode", Char),
        field("lst_price", "Sales Price", Float),
        field("active", "Active", Boolean),
        field("sale_ok", "Can be Sold", Boolean),
        field(
            "type",
            "Product Type",
            Selection(&[
                ("consu", "Goods"),
                ("service", "Service"),
                ("combo", "Combo"),
            ]),
        ),
    ],
};

/// `res.company`: the one company everything belongs to.
pub const RES_COMPANY: Model = Model {
    name: "res.company",
    description: "Companies",
    fields: &[
        field("name", "Company Name", Char).required(),
        field("display_name", "Display Name", Char).computed(),
        field("currency_id", "Currency", Many2one("res.currency")).required(),
    ],
};

/// `res.currency`.
pub const RES_CURRENCY: Model = Model {
    name: "res.currency",
    description: "Currency",
    fields: &[
        field("name", "Currency", Char).required(),
        field("display_name", "Display Name", Char).computed(),
        field("symbol", "Symbol", Char).required(),
    ],
};

/// Every model the sandbox holds.
pub const MODELS: [&Model; 8] = [
    &SALE_ORDER,
    &SALE_ORDER_LINE,
    &ACCOUNT_MOVE,
    &ACCOUNT_MOVE_LINE,
    &RES_PARTNER,
    &PRODUCT_PRODUCT,
    &RES_COMPANY,
    &RES_CURRENCY,
];

/// The model called `name`.
pub fn model(name: &str) -> Option<&'static Model> {
    MODELS.iter().copied().find(|m| m.name == name)
}

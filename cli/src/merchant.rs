//! `ferrypay merchant ...`: operators manage merchants in the DynamoDB table.

use std::sync::Arc;

use ferrypay::{
    aws::KmsDataKeys,
    config::OperatorConfig,
    model::{
        Cidr, Clock, KeyKind, Merchant, MerchantId, MerchantStatus, NotifyEvents, SystemClock,
    },
    service::{retry::RetrySchedule, AllowlistChange, MerchantAdmin, NewMerchant},
    store::{DynamoStore, SecretKeys},
};

use crate::args::Args;

/// How long a rotated-out webhook secret keeps signing unless `--overlap` says otherwise.
const DEFAULT_WEBHOOK_OVERLAP: &str = "24h";

pub const USAGE: &str = "\
  ferrypay merchant create --name NAME [--notify-url URL]
  ferrypay merchant list
  ferrypay merchant show ID
  ferrypay merchant disable ID | enable ID
  ferrypay merchant rotate-key ID [--publishable]
  ferrypay merchant rotate-webhook-secret ID [--overlap DURATION]
      a new webhook secret; the old one keeps signing too (a second signature) for the
      overlap (default 24h; 0s ends it at once), so the merchant can switch without a gap
  ferrypay merchant set-notify-url ID (URL | --clear)
  ferrypay merchant set-events ID EVENT,EVENT...
      the webhook events the notify URL receives: order.paid always; order.closed,
      refund.succeeded, refund.abnormal, refund.closed only when named here (a receiver
      written for payments must not see refunds unasked); set-events ID order.paid: back to
      order.paid only
  ferrypay merchant rotate-link-secret ID
      a new payment-link signing secret (lsk_...); links signed with the old one stop working
  ferrypay merchant link-policy ID [--require-signed | --allow-unsigned]
                                   [--return-hosts HOST,HOST... | --default-return-hosts]
      which jump-pay links are honoured: --require-signed refuses unsigned links (needs a link
      secret first); --return-hosts limits return_url to these hosts (*.example.com: any
      subdomain, not example.com itself), at most 20; --default-return-hosts clears them, leaving
      the default: the notify URL's host and its subdomains (no notify URL: no return_url)
  ferrypay merchant ip-allowlist ID (--add CIDR,CIDR... | --remove CIDR,CIDR... | --clear)
      where the secret key may be used from (IPv4 or IPv6, 203.0.113.0/24, 2001:db8::/32, or
      one address); other addresses get 403 ip_not_allowed; an empty list allows all
  ferrypay merchant reseal --all
      rewrite every merchant so its webhook and link secrets are stored sealed (tables from
      before sealing hold them in plain text); creates the keyrings first if needed
  ferrypay merchant migrate-counts
      move order counts written by an older ferrypay to their own partition (totals are
      right before and after; the IAM policies need the move)
      manage merchants in the DynamoDB table: --table NAME (or FERRYPAY_TABLE);
      --endpoint URL (or FERRYPAY_DYNAMODB_ENDPOINT) for a local emulator (dummy credentials);
      otherwise AWS with the usual AWS_* credentials and region. --kms-key-id KEY (or
      FERRYPAY_KMS_KEY_ID): the KMS key that wraps the data keys sealing secrets, needed when
      the table has no keyring yet (on an emulator without it: the public local dev key).
      --allow-http accepts http:// notify URLs (dev tables only). New keys are printed once and
      never again. An update that meets another one made meanwhile writes nothing: run it again.";

/// Runs one merchant command; returns what to print.
pub async fn run(args: &[String]) -> Result<String, String> {
    let args = Args::parse(
        args,
        &[
            "--table",
            "--endpoint",
            "--name",
            "--notify-url",
            "--overlap",
            "--return-hosts",
            "--kms-key-id",
            "--add",
            "--remove",
        ],
        &[
            "--publishable",
            "--clear",
            "--allow-http",
            "--require-signed",
            "--allow-unsigned",
            "--default-return-hosts",
            "--any-return-host",
            "--all",
        ],
    )?;
    let vars = OperatorConfig::from_env().map_err(|e| e.to_string())?;
    let table = args
        .option_or("--table", vars.table)
        .ok_or("the table: --table NAME or FERRYPAY_TABLE")?;
    let endpoint = args.option_or("--endpoint", vars.dynamodb_endpoint);
    let config = match &endpoint {
        Some(url) => ferrypay::aws::emulator_config(url).await,
        None => ferrypay::aws::sdk_config(None).await,
    };
    // The operator opens and seals every secret; keyrings wrapped by the public dev key are
    // accepted only on a local emulator.
    let data_keys = KmsDataKeys::new(&config, args.option_or("--kms-key-id", vars.kms_key_id));
    let data_keys = match endpoint {
        Some(_) => data_keys.with_local_dev_key().map_err(|e| e.to_string())?,
        None => data_keys,
    };
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table)
        .with_secret_keys(SecretKeys::operator(Arc::new(data_keys)));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let admin = MerchantAdmin::new(&store, &*clock, args.switch("--allow-http"));
    let positional: Vec<&str> = args.positional.iter().map(String::as_str).collect();
    let id = |i: usize| {
        positional
            .get(i)
            .map(|id| MerchantId::new(*id))
            .ok_or_else(|| "which merchant? give its id".to_string())
    };
    let text = |e: ferrypay::service::AdminError| e.to_string();
    match positional.first().copied() {
        Some("create") => {
            let name = args.option("--name").ok_or("--name NAME is required")?;
            let new = NewMerchant {
                name: name.to_string(),
                notify_url: args.option("--notify-url").map(str::to_string),
                ..NewMerchant::default()
            };
            let (merchant, keys) = admin.onboard(new).await.map_err(|e| e.to_string())?;
            Ok(format!(
                "{}secret key      {}   (shown once: store it now)\n\
                 publishable key {}\n\
                 webhook secret  {}\n",
                describe(&merchant),
                keys.secret_key.expose(),
                keys.publishable_key,
                keys.webhook_secret.expose(),
            ))
        }
        Some("list") => {
            let merchants = admin.list().await.map_err(text)?;
            let mut out = format!(
                "{:<22} {:<9} {:<30} {:<40} ip allowlist\n",
                "id", "status", "name", "notify url"
            );
            for m in &merchants {
                let allowlist = if m.ip_allowlist.is_empty() {
                    "any".to_string()
                } else {
                    m.ip_allowlist
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                };
                out.push_str(&format!(
                    "{:<22} {:<9} {:<30} {:<40} {allowlist}\n",
                    m.id.as_str(),
                    status(m.status),
                    m.name,
                    m.notify_url.as_deref().unwrap_or("-")
                ));
            }
            out.push_str(&format!("{} merchant(s)\n", merchants.len()));
            Ok(out)
        }
        Some("show") => Ok(describe(&admin.get(&id(1)?).await.map_err(text)?)),
        Some("disable") => {
            let m = admin
                .set_status(&id(1)?, MerchantStatus::Disabled)
                .await
                .map_err(text)?;
            Ok(describe(&m))
        }
        Some("enable") => {
            let m = admin
                .set_status(&id(1)?, MerchantStatus::Active)
                .await
                .map_err(text)?;
            Ok(describe(&m))
        }
        Some("rotate-key") => {
            let kind = if args.switch("--publishable") {
                KeyKind::Publishable
            } else {
                KeyKind::Secret
            };
            let (m, key) = admin.rotate_key(&id(1)?, kind).await.map_err(text)?;
            let label = match kind {
                KeyKind::Secret => "new secret key     ",
                KeyKind::Publishable => "new publishable key",
            };
            Ok(format!(
                "{}{label} {}   (shown once; the old key no longer works)\n",
                describe(&m),
                key.expose()
            ))
        }
        Some("rotate-webhook-secret") => {
            let overlap = args.option("--overlap").unwrap_or(DEFAULT_WEBHOOK_OVERLAP);
            let overlap = match RetrySchedule::parse(overlap).map(|s| s.waits().to_vec()) {
                Ok(waits) if waits.len() == 1 => waits[0],
                _ => {
                    return Err(format!(
                        "--overlap {overlap:?}: one duration, like 24h or 30m"
                    ))
                }
            };
            let (m, secret) = admin
                .rotate_webhook_secret(&id(1)?, overlap)
                .await
                .map_err(text)?;
            Ok(format!(
                "{}new webhook secret  {}   (shown once)
",
                describe(&m),
                secret.expose()
            ))
        }
        Some("set-notify-url") => {
            let url = match (positional.get(2), args.switch("--clear")) {
                (Some(url), false) => Some(url.to_string()),
                (None, true) => None,
                _ => return Err("give a URL, or --clear".into()),
            };
            let m = admin.set_notify_url(&id(1)?, url).await.map_err(text)?;
            Ok(describe(&m))
        }
        Some("rotate-link-secret") => {
            let (m, secret) = admin.rotate_link_secret(&id(1)?).await.map_err(text)?;
            Ok(format!(
                "{}new link signing secret  {}   (shown once; links signed with the old one no longer work)\n",
                describe(&m),
                secret.expose()
            ))
        }
        Some("link-policy") => {
            let require_signed = match (
                args.switch("--require-signed"),
                args.switch("--allow-unsigned"),
            ) {
                (true, true) => return Err("--require-signed or --allow-unsigned, not both".into()),
                (true, false) => Some(true),
                (false, true) => Some(false),
                (false, false) => None,
            };
            // --any-return-host is the older name of --default-return-hosts (it never meant
            // "any host": without registered hosts, links return only to the notify URL's).
            let hosts = match (
                args.option("--return-hosts"),
                args.switch("--default-return-hosts") || args.switch("--any-return-host"),
            ) {
                (Some(_), true) => {
                    return Err("--return-hosts or --default-return-hosts, not both".into())
                }
                (Some(list), false) => {
                    Some(list.split(',').map(|h| h.trim().to_string()).collect())
                }
                (None, true) => Some(Vec::new()),
                (None, false) => None,
            };
            if require_signed.is_none() && hosts.is_none() {
                return Err("what to set? --require-signed | --allow-unsigned, \
                     --return-hosts HOST,HOST... | --default-return-hosts"
                    .into());
            }
            let m = admin
                .set_link_policy(&id(1)?, require_signed, hosts)
                .await
                .map_err(text)?;
            Ok(describe(&m))
        }
        Some("set-events") => {
            let list = positional
                .get(2)
                .ok_or("which events? e.g. order.paid,refund.succeeded")?;
            let events = NotifyEvents::parse_list(list)?;
            let m = admin
                .set_notify_events(&id(1)?, events)
                .await
                .map_err(text)?;
            Ok(describe(&m))
        }
        Some("ip-allowlist") => {
            let ranges = |list: &str| -> Result<Vec<Cidr>, String> {
                list.split(',').map(Cidr::parse).collect()
            };
            let change = match (
                args.option("--add"),
                args.option("--remove"),
                args.switch("--clear"),
            ) {
                (Some(list), None, false) => AllowlistChange::Add(ranges(list)?),
                (None, Some(list), false) => AllowlistChange::Remove(ranges(list)?),
                (None, None, true) => AllowlistChange::Clear,
                _ => return Err("one of --add CIDR,..., --remove CIDR,..., --clear".into()),
            };
            let m = admin
                .change_ip_allowlist(&id(1)?, change)
                .await
                .map_err(text)?;
            Ok(describe(&m))
        }
        Some("reseal") => {
            if !args.switch("--all") {
                return Err("reseal --all: every merchant is rewritten".into());
            }
            store.ensure_keyrings().await.map_err(|e| e.to_string())?;
            let count = admin.reseal_all().await.map_err(text)?;
            Ok(format!(
                "{count} merchant(s) rewritten with sealed secrets\n"
            ))
        }
        Some("migrate-counts") => {
            let count = store
                .migrate_legacy_counts()
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("{count} old counts item(s) moved\n"))
        }
        _ => Err(format!("usage:\n{USAGE}")),
    }
}

fn status(status: MerchantStatus) -> &'static str {
    match status {
        MerchantStatus::Active => "active",
        MerchantStatus::Disabled => "disabled",
    }
}

/// A merchant for people: no key, only the start of the webhook secret, and of the link
/// signing secret only whether there is one.
fn describe(m: &Merchant) -> String {
    let shown: String = match m.webhook_secret.expose() {
        Ok(secret) => secret.chars().take(10).collect(),
        Err(_) => "(sealed)".into(),
    };
    let previous = match &m.previous_webhook_secret {
        Some(previous) => format!(
            "; the previous one also signs until {}",
            previous.until.to_beijing_string()
        ),
        None => String::new(),
    };
    let links = &m.payment_links;
    let link_secret = match links.signing_secret {
        Some(_) => "set (shown only when rotated)",
        None => "none (rotate-link-secret issues one)",
    };
    let signed_links = if links.require_signed {
        "required"
    } else {
        "not required"
    };
    let return_hosts = if links.allowed_return_hosts.is_empty() {
        "default (none registered: the notify URL's host and its subdomains)".to_string()
    } else {
        links.allowed_return_hosts.join(", ")
    };
    let allowlist = if m.ip_allowlist.is_empty() {
        "any address".to_string()
    } else {
        m.ip_allowlist
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "merchant        {}\n\
         name            {}\n\
         status          {}\n\
         notify url      {}\n\
         notify events   {}\n\
         webhook secret  {shown}... (shown in full only at creation){previous}\n\
         link secret     {link_secret}\n\
         signed links    {signed_links}\n\
         return hosts    {return_hosts}\n\
         ip allowlist    {allowlist}\n\
         created         {}\n",
        m.id,
        m.name,
        status(m.status),
        m.notify_url.as_deref().unwrap_or("-"),
        m.notify_events,
        m.created_at.to_beijing_string(),
    )
}

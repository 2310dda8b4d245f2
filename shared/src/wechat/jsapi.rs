//! JSAPI pay parameters for `WeixinJSBridge.invoke('getBrandWCPayRequest', ...)`.

use serde::{Deserialize, Serialize};

use super::error::SignError;
use super::keys::PrivateKey;

/// The object handed to `getBrandWCPayRequest`, with exactly WeChat's (case-sensitive) names:
/// `{appId, timeStamp, nonceStr, package, signType, paySign}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsapiPayParams {
    #[serde(rename = "appId")]
    pub app_id: String,
    /// Unix seconds as a string.
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=...`
    pub package: String,
    /// Always `RSA`.
    #[serde(rename = "signType")]
    pub sign_type: String,
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

/// The signed message: `appId\ntimeStamp\nnonceStr\npackage\n`.
pub fn jsapi_message(app_id: &str, time_stamp: &str, nonce_str: &str, package: &str) -> String {
    format!("{app_id}\n{time_stamp}\n{nonce_str}\n{package}\n")
}

/// Build and sign the pay parameters with the merchant private key. `app_id` is the official
/// account's appid the prepay was created with (in partner mode, the one the openid belongs to).
pub fn jsapi_pay_params(
    app_id: &str,
    prepay_id: &str,
    timestamp: i64,
    nonce_str: &str,
    merchant_key: &PrivateKey,
) -> Result<JsapiPayParams, SignError> {
    let time_stamp = timestamp.to_string();
    let package = format!("prepay_id={prepay_id}");
    let pay_sign = merchant_key
        .sign_base64(jsapi_message(app_id, &time_stamp, nonce_str, &package).as_bytes())?;
    Ok(JsapiPayParams {
        app_id: app_id.to_owned(),
        time_stamp,
        nonce_str: nonce_str.to_owned(),
        package,
        sign_type: "RSA".to_owned(),
        pay_sign,
    })
}

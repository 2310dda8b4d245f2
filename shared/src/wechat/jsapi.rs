//! JSAPI pay parameters for `WeixinJSBridge.invoke('getBrandWCPayRequest', ...)`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::error::SignError;
use super::keys::{PrivateKey, VerifyingKey};

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

/// WeChat's side (for the mock): whether `paySign` is `key`'s signature (RSASSA-PKCS1-v1_5,
/// SHA-256, standard base64) of [`jsapi_message`] over the other fields. Checks nothing else:
/// appId, signType, timeStamp and the prepay id are the caller's.
pub fn pay_sign_valid(key: &VerifyingKey, params: &JsapiPayParams) -> bool {
    let Ok(signature) = STANDARD.decode(&params.pay_sign) else {
        return false;
    };
    let message = jsapi_message(
        &params.app_id,
        &params.time_stamp,
        &params.nonce_str,
        &params.package,
    );
    key.verify(message.as_bytes(), &signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GO_KEY: &str = include_str!("../../tests/fixtures/wechatpay/go_testkey_pkcs8.pem");

    #[test]
    fn pay_sign_verifies_and_any_change_breaks_it() {
        let key = PrivateKey::from_pem(GO_KEY).unwrap();
        let public = key.verifying_key().unwrap();
        let params =
            jsapi_pay_params("wx8888888888888888", "wx2017", 1_700_000_000, "n0nce", &key).unwrap();
        assert!(pay_sign_valid(&public, &params));
        let changed = [
            JsapiPayParams {
                app_id: "wx0000000000000000".into(),
                ..params.clone()
            },
            JsapiPayParams {
                time_stamp: "1700000001".into(),
                ..params.clone()
            },
            JsapiPayParams {
                nonce_str: "other".into(),
                ..params.clone()
            },
            JsapiPayParams {
                package: "prepay_id=wx2018".into(),
                ..params.clone()
            },
            JsapiPayParams {
                pay_sign: "not base64!".into(),
                ..params.clone()
            },
            JsapiPayParams {
                pay_sign: String::new(),
                ..params.clone()
            },
        ];
        for params in changed {
            assert!(!pay_sign_valid(&public, &params), "{params:?}");
        }
    }
}

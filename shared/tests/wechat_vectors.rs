//! WeChat Pay APIv3 crypto pinned by the official SDKs' test vectors and the derived vectors
//! (see `fixtures/wechatpay/README.md`), plus every failure path.

// A test crate: its fixture helpers (outside `#[test]` functions) may unwrap too.
#![allow(clippy::unwrap_used)]

use ferrypay::wechat::aead::{decrypt, encrypt};
use ferrypay::wechat::signer::{canonical_url, request_message};
use ferrypay::wechat::verifier::response_message;
use ferrypay::wechat::*;
use serde_json::Value;

const GO_KEY: &str = include_str!("fixtures/wechatpay/go_testkey_pkcs8.pem");
const GO_CERT: &str = include_str!("fixtures/wechatpay/go_wechatpay_cert.pem");
const GO_NOTIFY_HEADERS: &str = include_str!("fixtures/wechatpay/go_notify_headers.json");
const GO_NOTIFY_BODY: &[u8] = include_bytes!("fixtures/wechatpay/go_notify_body.json");
const GO_CERTIFICATES: &[u8] = include_bytes!("fixtures/wechatpay/go_certificates_response.json");
const DERIVED: &str = include_str!("fixtures/wechatpay/derived_vectors.json");
const JAVA_CERTIFICATES: &[u8] =
    include_bytes!("fixtures/wechatpay/java_certificates_response.json");
const JAVA_DOWNLOADED_CERT: &str = include_str!("fixtures/wechatpay/java_downloaded_cert.pem");
const JAVA_MERCHANT_KEY: &str = include_str!("fixtures/wechatpay/java_merchant_private_key.pem");
const JAVA_MERCHANT_CERT: &str = include_str!("fixtures/wechatpay/java_merchant_certificate.pem");
const JAVA_WECHAT_PAY_KEY: &str =
    include_str!("fixtures/wechatpay/java_wechat_pay_private_key.pem");
const JAVA_WECHAT_PAY_CERT: &str =
    include_str!("fixtures/wechatpay/java_wechat_pay_certificate.pem");
const JAVA_WECHAT_PAY_PUBLIC_KEY: &str =
    include_str!("fixtures/wechatpay/java_wechat_pay_public_key.pem");
const JAVA_NOTIFICATION: &str =
    include_str!("fixtures/wechatpay/java_wechat_pay_notification.json");

const JAVA_API_V3_KEY: &str = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb";
const GO_SERIAL: &str = "D7CE59D1F522D701";
const GO_SOURCE_SIGNATURE: &str = "BKyAfU4iMCuvXMXS0Wzam3V/cnxZ+JaqigPM5OhljS2iOT95OO6Fsuml2JkFANJU9K6q9bLlDhPXuoVz+pp4hAm6pHU4ld815U4jsKu1RkyaII+1CYBUYC8TK0XtJ8FwUXXz8vZHh58rrAVN1XwNyvD1vfpxrMT4SL536GLwvpUHlCqIMzoZUguLli/K8V29QiOhuH6IEqLNJn8e9b3nwNcQ7be3CzYGpDAKBfDGPCqCv8Rw5zndhlffk2FEA70G4hvMwe51qMN/RAJbknXG23bSlObuTCN7Ndj1aJGH6/L+hdwfLpUtJm4QYVazzW7DFD27EpSQEqA8bX9+8m1rLg==";

fn derived() -> Value {
    serde_json::from_str(DERIVED).unwrap()
}

fn go_key() -> PrivateKey {
    PrivateKey::from_pem(GO_KEY).unwrap()
}

fn go_store() -> KeyStore {
    KeyStore::new().with_certificate(Certificate::from_pem(GO_CERT).unwrap())
}

fn java_api_v3_key() -> ApiV3Key {
    JAVA_API_V3_KEY.parse().unwrap()
}

fn s(value: &Value) -> &str {
    value.as_str().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Keys and serials

#[test]
fn go_test_key_signs_source() {
    assert_eq!(
        go_key().sign_base64(b"source").unwrap(),
        GO_SOURCE_SIGNATURE
    );
}

#[test]
fn certificate_serials() {
    for (pem, serial) in [
        (GO_CERT, "D7CE59D1F522D701"),
        (
            JAVA_MERCHANT_CERT,
            "5F1C72E2A8931B72A2E13AF8DEE92471EB397115",
        ),
        (
            JAVA_WECHAT_PAY_CERT,
            "440024045C4A427599D09BB4E3DE0279F2E813FD",
        ),
        (
            JAVA_DOWNLOADED_CERT,
            "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC",
        ),
    ] {
        assert_eq!(Certificate::from_pem(pem).unwrap().serial_no(), serial);
    }
}

#[test]
fn go_certificate_holds_the_go_key() {
    let certificate = Certificate::from_pem(GO_CERT).unwrap();
    let signature = base64_decode(GO_SOURCE_SIGNATURE);
    assert!(certificate.verifying_key().verify(b"source", &signature));
    assert!(!certificate.verifying_key().verify(b"sourcE", &signature));
}

#[test]
fn private_keys_are_redacted_in_debug() {
    let signer = RequestSigner::new("1900000109", GO_SERIAL, go_key());
    let debug = format!("{signer:?}");
    assert!(debug.contains("[redacted]"), "{debug}");
    assert!(!debug.contains("MIIE"), "{debug}");
    assert_eq!(format!("{:?}", java_api_v3_key()), "[redacted]");
}

// ---------------------------------------------------------------------------------------------
// Request signing (derived vectors)

#[test]
fn request_sign_vector() {
    let v = &derived()["request_sign"];
    let timestamp = v["timestamp"].as_i64().unwrap();
    let body = s(&v["body"]).as_bytes();
    let message = request_message(
        s(&v["method"]),
        s(&v["url"]),
        timestamp,
        s(&v["nonce"]),
        body,
    );
    assert_eq!(message, s(&v["message"]).as_bytes());

    let signer = RequestSigner::new("1900000109", GO_SERIAL, go_key());
    let signed = signer
        .sign(
            s(&v["method"]),
            s(&v["url"]),
            body,
            timestamp,
            s(&v["nonce"]),
        )
        .unwrap();
    assert_eq!(signed.signature, s(&v["signature"]));
    assert_eq!(signed.authorization, s(&v["authorization"]));

    // and WeChat's side accepts it
    let verifier = go_merchant_verifier();
    let fields = verifier
        .verify(
            Some(&signed.authorization),
            "POST",
            s(&v["url"]),
            body,
            timestamp,
        )
        .unwrap();
    assert_eq!(fields.mchid, "1900000109");
    assert_eq!(fields.serial_no, GO_SERIAL);
}

#[test]
fn get_sign_vector() {
    let v = &derived()["get_sign"];
    let uri: http::Uri = "https://api.mch.weixin.qq.com/v3/pay/transactions/out-trade-no/ORDER_20240101_0001?mchid=1900000109"
        .parse()
        .unwrap();
    let url = canonical_url(&uri);
    let message = request_message("GET", url, 1624523846, "A1B2C3D4E5F6G7", b"");
    assert_eq!(message, s(&v["message"]).as_bytes());

    let signed = RequestSigner::new("1900000109", GO_SERIAL, go_key())
        .sign("GET", url, b"", 1624523846, "A1B2C3D4E5F6G7")
        .unwrap();
    assert_eq!(signed.signature, s(&v["signature"]));
    assert_eq!(
        signed.authorization,
        format!(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1900000109\",nonce_str=\"A1B2C3D4E5F6G7\",signature=\"{}\",timestamp=\"1624523846\",serial_no=\"D7CE59D1F522D701\"",
            s(&v["signature"])
        )
    );
    go_merchant_verifier()
        .verify(Some(&signed.authorization), "GET", url, b"", 1624523846)
        .unwrap();
}

#[test]
fn random_nonce_signing_verifies() {
    let signer = RequestSigner::new("1900000109", GO_SERIAL, go_key());
    let signed = signer
        .sign_with_random_nonce("POST", "/v3/pay/transactions/native", b"{}", 1_700_000_000)
        .unwrap();
    let fields = go_merchant_verifier()
        .verify(
            Some(&signed.authorization),
            "POST",
            "/v3/pay/transactions/native",
            b"{}",
            1_700_000_000,
        )
        .unwrap();
    assert_eq!(fields.nonce_str.len(), 32);
    assert!(fields.nonce_str.bytes().all(|b| b.is_ascii_alphanumeric()));
}

// ---------------------------------------------------------------------------------------------
// JSAPI

#[test]
fn jsapi_paysign_vector() {
    let v = &derived()["jsapi_paysign"];
    let params = jsapi_pay_params(
        "wx8888888888888888",
        "wx201410272009395522657a690389285100",
        1414561699,
        "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        &go_key(),
    )
    .unwrap();
    assert_eq!(
        ferrypay::wechat::jsapi::jsapi_message(
            &params.app_id,
            &params.time_stamp,
            &params.nonce_str,
            &params.package
        ),
        s(&v["message"])
    );
    assert_eq!(params.pay_sign, s(&v["paySign"]));
    assert_eq!(
        serde_json::to_value(&params).unwrap(),
        serde_json::json!({
            "appId": "wx8888888888888888",
            "timeStamp": "1414561699",
            "nonceStr": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
            "package": "prepay_id=wx201410272009395522657a690389285100",
            "signType": "RSA",
            "paySign": s(&v["paySign"]),
        })
    );
    let back: JsapiPayParams =
        serde_json::from_value(serde_json::to_value(&params).unwrap()).unwrap();
    assert_eq!(back, params);
}

// ---------------------------------------------------------------------------------------------
// Notifications: the AES-256 derived vector

struct Aes256Notification {
    headers: WechatpayHeaders,
    body: String,
    plaintext: String,
    now: i64,
}

fn aes256_notification() -> Aes256Notification {
    let v = &derived()["notification_aes256"];
    assert_eq!(s(&v["apiv3_key"]), JAVA_API_V3_KEY);
    let pairs: Vec<(String, String)> = v["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), s(v).to_owned()))
        .collect();
    let headers =
        WechatpayHeaders::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
    Aes256Notification {
        now: headers.timestamp.parse().unwrap(),
        headers,
        body: s(&v["body"]).to_owned(),
        plaintext: s(&v["plaintext"]).to_owned(),
    }
}

#[test]
fn notification_aes256_vector() {
    let n = aes256_notification();
    assert_eq!(n.now, 1704081606);
    assert_eq!(n.headers.serial, GO_SERIAL);
    let opened = open_notification(
        &go_store(),
        &n.headers,
        n.body.as_bytes(),
        &java_api_v3_key(),
        n.now,
    )
    .unwrap();
    assert_eq!(opened.plaintext, n.plaintext);
    assert_eq!(opened.notification.id, "EV-2018022511223320873");
    assert_eq!(opened.notification.event_type, "TRANSACTION.SUCCESS");
    assert_eq!(opened.notification.resource_type, "encrypt-resource");
    assert_eq!(opened.notification.summary, "支付成功");
    assert_eq!(opened.notification.create_time, "2024-01-01T12:00:06+08:00");
    assert_eq!(
        opened.notification.resource.original_type.as_deref(),
        Some("transaction")
    );

    // the mock-side helpers reproduce the vector byte for byte
    let resigned = sign_response(
        &go_key(),
        GO_SERIAL,
        n.now,
        &n.headers.nonce,
        n.body.as_bytes(),
    )
    .unwrap();
    assert_eq!(resigned, n.headers);
    let reencrypted = encrypt_resource(
        &java_api_v3_key(),
        "fixedNonce12",
        "transaction",
        Some("transaction"),
        n.plaintext.as_bytes(),
    )
    .unwrap();
    assert_eq!(reencrypted, opened.notification.resource);
}

#[test]
fn notification_headers_from_an_http_header_map() {
    let n = aes256_notification();
    let mut map = http::HeaderMap::new();
    for (name, value) in n.headers.to_pairs() {
        map.insert(
            http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let headers = WechatpayHeaders::from_header_map(&map).unwrap();
    assert_eq!(headers, n.headers);
    go_store()
        .verify(&headers, n.body.as_bytes(), n.now)
        .unwrap();
}

#[test]
fn notification_timestamp_window_is_300_seconds_inclusive() {
    let n = aes256_notification();
    let store = go_store();
    for skew in [-300, -1, 0, 1, 300] {
        assert_eq!(
            store.verify(&n.headers, n.body.as_bytes(), n.now + skew),
            Ok(()),
            "skew {skew}"
        );
    }
    for skew in [-301, 301, -86_400, 86_400] {
        assert_eq!(
            store.verify(&n.headers, n.body.as_bytes(), n.now + skew),
            Err(VerifyError::TimestampOutOfWindow {
                timestamp: n.now,
                now: n.now + skew
            }),
            "skew {skew}"
        );
    }
}

#[test]
fn notification_tampered_body_byte_is_rejected() {
    let n = aes256_notification();
    let store = go_store();
    let body = n.body.as_bytes();
    for index in [0, body.len() / 2, body.len() - 1] {
        let mut tampered = body.to_vec();
        tampered[index] ^= 0x01;
        assert_eq!(
            store.verify(&n.headers, &tampered, n.now),
            Err(VerifyError::BadSignature),
            "byte {index}"
        );
    }
    // a trailing newline (a re-serialised or line-read body) also breaks it
    let mut with_newline = body.to_vec();
    with_newline.push(b'\n');
    assert_eq!(
        store.verify(&n.headers, &with_newline, n.now),
        Err(VerifyError::BadSignature)
    );
    // and so do a tampered nonce or timestamp
    let mut headers = n.headers.clone();
    headers.nonce.push('X');
    assert_eq!(
        store.verify(&headers, body, n.now),
        Err(VerifyError::BadSignature)
    );
    let mut headers = n.headers.clone();
    headers.timestamp = (n.now + 1).to_string();
    assert_eq!(
        store.verify(&headers, body, n.now),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn notification_tampered_signature_is_rejected() {
    let n = aes256_notification();
    let store = go_store();
    let mut headers = n.headers.clone();
    // flip one base64 character (still valid base64)
    let mut chars: Vec<char> = headers.signature.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    headers.signature = chars.into_iter().collect();
    assert_eq!(
        store.verify(&headers, n.body.as_bytes(), n.now),
        Err(VerifyError::BadSignature)
    );
    // a valid signature of another message
    let mut headers = n.headers.clone();
    headers.signature = GO_SOURCE_SIGNATURE.to_owned();
    assert_eq!(
        store.verify(&headers, n.body.as_bytes(), n.now),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn notification_malformed_signature_base64_is_rejected() {
    let n = aes256_notification();
    let store = go_store();
    let signature = &n.headers.signature;
    let malformed = [
        signature[..signature.len() - 1].to_owned(), // truncated: bad padding
        signature.trim_end_matches('=').to_owned(),  // padding stripped
        format!("{}!", &signature[..signature.len() - 1]),
        signature.replace('+', "-"), // URL-safe alphabet is not accepted
        "@@@@".to_owned(),
    ];
    for bad in malformed {
        let mut headers = n.headers.clone();
        headers.signature = bad.clone();
        assert_eq!(
            store.verify(&headers, n.body.as_bytes(), n.now),
            Err(VerifyError::MalformedSignature),
            "{bad}"
        );
    }
    // truncated on a 4-character boundary: valid base64, too short a signature
    let mut headers = n.headers.clone();
    headers.signature = signature[..signature.len() - 4].to_owned();
    assert_eq!(
        store.verify(&headers, n.body.as_bytes(), n.now),
        Err(VerifyError::BadSignature)
    );
    let mut headers = n.headers.clone();
    headers.signature = String::from("AAAA");
    assert_eq!(
        store.verify(&headers, n.body.as_bytes(), n.now),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn notification_signature_probe_is_rejected() {
    let n = aes256_notification();
    let mut headers = n.headers.clone();
    headers.signature = format!("WECHATPAY/SIGNTEST/{}", n.headers.signature);
    let result = go_store().verify(&headers, n.body.as_bytes(), n.now);
    assert_eq!(result, Err(VerifyError::SignatureProbe));
    assert!(matches!(
        open_notification(
            &go_store(),
            &headers,
            n.body.as_bytes(),
            &java_api_v3_key(),
            n.now
        ),
        Err(NotificationError::Verify(VerifyError::SignatureProbe))
    ));
}

#[test]
fn notification_unknown_serial_is_a_distinct_error() {
    let n = aes256_notification();
    let mut headers = n.headers.clone();
    headers.serial = "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC".to_owned();
    let error = go_store()
        .verify(&headers, n.body.as_bytes(), n.now)
        .unwrap_err();
    assert_eq!(
        error,
        VerifyError::UnknownSerial("5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC".to_owned())
    );
    assert!(error.is_unknown_serial());
    assert!(!VerifyError::BadSignature.is_unknown_serial());
    // an empty store knows nothing
    assert!(KeyStore::new()
        .verify(&n.headers, n.body.as_bytes(), n.now)
        .unwrap_err()
        .is_unknown_serial());
    // the right serial on the wrong key
    let wrong_key = KeyStore::new().with_public_key(
        GO_SERIAL,
        VerifyingKey::from_spki_pem(JAVA_WECHAT_PAY_PUBLIC_KEY).unwrap(),
    );
    assert_eq!(
        wrong_key.verify(&n.headers, n.body.as_bytes(), n.now),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn notification_missing_headers_are_rejected() {
    let n = aes256_notification();
    let pairs = n.headers.to_pairs();
    for missing in [
        "Wechatpay-Timestamp",
        "Wechatpay-Nonce",
        "Wechatpay-Signature",
        "Wechatpay-Serial",
    ] {
        let rest: Vec<(&str, &str)> = pairs
            .iter()
            .copied()
            .filter(|(name, _)| *name != missing)
            .collect();
        assert_eq!(
            WechatpayHeaders::from_pairs(rest.iter().copied()),
            Err(VerifyError::MissingHeader(missing))
        );
    }
}

#[test]
fn notification_wrong_api_v3_key_and_tampered_resource() {
    let n = aes256_notification();
    let notification = Notification::from_json(n.body.as_bytes()).unwrap();
    let key = java_api_v3_key();
    assert_eq!(notification.decrypt(&key).unwrap(), n.plaintext);

    let wrong: ApiV3Key = "a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gc".parse().unwrap();
    assert_eq!(
        notification.decrypt(&wrong),
        Err(NotificationError::Decrypt(AeadError::DecryptionFailed))
    );
    assert!(matches!(
        open_notification(&go_store(), &n.headers, n.body.as_bytes(), &wrong, n.now),
        Err(NotificationError::Decrypt(AeadError::DecryptionFailed))
    ));

    let raw = base64_decode(&notification.resource.ciphertext);
    let tag_start = raw.len() - 16;
    for (what, index) in [
        ("first ciphertext byte", 0),
        ("last ciphertext byte", tag_start - 1),
        ("first tag byte", tag_start),
        ("last tag byte", raw.len() - 1),
    ] {
        let mut tampered = raw.clone();
        tampered[index] ^= 0x80;
        let mut resource = notification.resource.clone();
        resource.ciphertext = base64_encode(&tampered);
        assert_eq!(
            resource.decrypt(&key),
            Err(AeadError::DecryptionFailed),
            "{what}"
        );
    }
    let mut truncated_tag = notification.resource.clone();
    truncated_tag.ciphertext = base64_encode(&raw[..raw.len() - 1]);
    assert_eq!(
        truncated_tag.decrypt(&key),
        Err(AeadError::DecryptionFailed)
    );

    for aad in ["", "transactiom", "transaction "] {
        let mut resource = notification.resource.clone();
        resource.associated_data = aad.to_owned();
        assert_eq!(
            resource.decrypt(&key),
            Err(AeadError::DecryptionFailed),
            "{aad:?}"
        );
    }
    let mut resource = notification.resource.clone();
    resource.nonce = "fixedNonce13".to_owned();
    assert_eq!(resource.decrypt(&key), Err(AeadError::DecryptionFailed));

    let mut resource = notification.resource.clone();
    resource.algorithm = "AEAD_SM4_GCM".to_owned();
    assert_eq!(
        resource.decrypt(&key),
        Err(AeadError::UnsupportedAlgorithm("AEAD_SM4_GCM".to_owned()))
    );

    let mut resource = notification.resource.clone();
    resource.ciphertext.insert(3, '*');
    assert_eq!(resource.decrypt(&key), Err(AeadError::MalformedCiphertext));
}

// ---------------------------------------------------------------------------------------------
// Notifications: the official Go and Java vectors (16-byte APIv3 key: signature only)

fn go_notify_headers() -> WechatpayHeaders {
    let map: Value = serde_json::from_str(GO_NOTIFY_HEADERS).unwrap();
    let get = |name: &str| map.get(name).and_then(Value::as_str);
    WechatpayHeaders::from_fn(get).unwrap()
}

#[test]
fn go_notify_signature_vector() {
    let headers = go_notify_headers();
    assert_eq!(headers.timestamp, "1624523846");
    let store = go_store();
    assert_eq!(store.verify(&headers, GO_NOTIFY_BODY, 1624523846), Ok(()));
    assert_eq!(
        store.verify(&headers, GO_NOTIFY_BODY, 1624523846 + 301),
        Err(VerifyError::TimestampOutOfWindow {
            timestamp: 1624523846,
            now: 1624523846 + 301
        })
    );
    // parse the envelope after verification; its 16-byte APIv3 key is refused
    let notification = Notification::from_json(GO_NOTIFY_BODY).unwrap();
    assert_eq!(notification.event_type, "PAYSCORE.USER_OPEN_SERVICE");
    assert_eq!(notification.summary, "签约成功");
    assert_eq!(
        "testMchAPIv3Key0".parse::<ApiV3Key>(),
        Err(AeadError::InvalidKeyLength { len: 16 })
    );
    // our signer reproduces WeChat's signature with the platform key
    assert_eq!(
        go_key()
            .sign_base64(&response_message(
                &headers.timestamp,
                &headers.nonce,
                GO_NOTIFY_BODY
            ))
            .unwrap(),
        headers.signature
    );
}

#[test]
fn java_notification_vector() {
    #[derive(serde::Deserialize)]
    struct JavaNotification {
        resource: EncryptedResource,
    }
    let java: JavaNotification = serde_json::from_str(JAVA_NOTIFICATION).unwrap();
    // the same resource as the Go notification (AES-128 with testMchAPIv3Key0)
    let go = Notification::from_json(GO_NOTIFY_BODY).unwrap();
    assert_eq!(java.resource, go.resource);
    assert_eq!(java.resource.algorithm, AEAD_AES_256_GCM);
    assert_eq!(java.resource.original_type.as_deref(), Some("payscore"));
    assert_eq!(java.resource.associated_data, "payscore");
    assert_eq!(java.resource.nonce, "Kj7QIyUiYx1q");
    // a 32-byte key cannot open an AES-128 ciphertext
    assert_eq!(
        java.resource.decrypt(&java_api_v3_key()),
        Err(AeadError::DecryptionFailed)
    );
}

// ---------------------------------------------------------------------------------------------
// AES-256-GCM unit vector (Java SDK AeadAesCipherTest)

#[test]
fn java_aes256_gcm_vector() {
    let key = java_api_v3_key();
    assert_eq!(
        encrypt(&key, "uluk4a9R25RW", "associatedData", b"message").unwrap(),
        "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
    );
    assert_eq!(
        decrypt(
            &key,
            "uluk4a9R25RW",
            "associatedData",
            "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
        )
        .unwrap(),
        b"message"
    );
    assert_eq!(
        decrypt(
            &key,
            "uluk4a9R25RW",
            "associatedDatA",
            "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
        ),
        Err(AeadError::DecryptionFailed)
    );
    assert_eq!(
        decrypt(
            &key,
            "uluk4a9R25RX",
            "associatedData",
            "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwI="
        ),
        Err(AeadError::DecryptionFailed)
    );
    assert_eq!(
        decrypt(
            &key,
            "uluk4a9R25RW",
            "associatedData",
            "ulwSiIajGClcvcOYvOQ7+l+0PAbzzwA="
        ),
        Err(AeadError::DecryptionFailed)
    );
}

// ---------------------------------------------------------------------------------------------
// /v3/certificates

#[test]
fn java_downloaded_certificate_vector() {
    let certificates =
        parse_certificates_response(JAVA_CERTIFICATES, JAVA_API_V3_KEY.as_bytes()).unwrap();
    assert_eq!(certificates.len(), 1);
    let downloaded = &certificates[0];
    assert_eq!(
        downloaded.serial_no,
        "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC"
    );
    assert_eq!(downloaded.pem, JAVA_DOWNLOADED_CERT);
    assert_eq!(downloaded.effective_time, "2023-09-19T23:15:58+08:00");
    assert_eq!(downloaded.expire_time, "2028-09-17T23:15:58+08:00");
    // 2028-09-17T15:15:58Z
    assert_eq!(downloaded.certificate.not_after(), 1_852_816_558);
    assert_eq!(
        downloaded.certificate.serial_no(),
        "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC"
    );

    // the same through the typed response, and the result feeds a key store
    let response = CertificatesResponse::from_json(JAVA_CERTIFICATES).unwrap();
    let again = response.decrypt(&java_api_v3_key()).unwrap();
    let store = KeyStore::new().with_certificate(again[0].certificate.clone());
    assert!(store.contains("5dea10ef55877e3cf6c33255c2e7defff7e427ec"));

    // wrong APIv3 key
    assert!(matches!(
        parse_certificates_response(JAVA_CERTIFICATES, b"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gc"),
        Err(CertificatesError::Decrypt {
            source: AeadError::DecryptionFailed,
            ..
        })
    ));
}

#[test]
fn go_certificates_response_shape_and_short_key() {
    let response = CertificatesResponse::from_json(GO_CERTIFICATES).unwrap();
    assert_eq!(response.data.len(), 1);
    let entry = &response.data[0];
    assert_eq!(entry.serial_no, GO_SERIAL);
    assert_eq!(entry.effective_time, "2021-04-27T16:55:23+08:00");
    assert_eq!(entry.expire_time, "2031-04-25T16:55:23+08:00");
    assert_eq!(entry.encrypt_certificate.algorithm, AEAD_AES_256_GCM);
    assert_eq!(entry.encrypt_certificate.associated_data, "certificate");
    assert_eq!(entry.encrypt_certificate.nonce, "3a584b49ed9b");
    assert_eq!(entry.encrypt_certificate.original_type, None);

    // its APIv3 key is 16 bytes (AES-128): refused with a clear error
    let error = parse_certificates_response(GO_CERTIFICATES, b"mockAPIv3Key1234").unwrap_err();
    assert_eq!(
        error,
        CertificatesError::InvalidKey(AeadError::InvalidKeyLength { len: 16 })
    );
    assert_eq!(
        error.to_string(),
        "APIv3 key: the APIv3 key must be 32 bytes, got 16"
    );
}

// ---------------------------------------------------------------------------------------------
// WeChat Pay public-key mode and the Java key pairs

#[test]
fn public_key_mode_and_certificate_mode_with_the_java_platform_key() {
    let platform_key = PrivateKey::from_pem(JAVA_WECHAT_PAY_KEY).unwrap();
    let public_key = VerifyingKey::from_spki_pem(JAVA_WECHAT_PAY_PUBLIC_KEY).unwrap();
    let certificate = Certificate::from_pem(JAVA_WECHAT_PAY_CERT).unwrap();
    let store = KeyStore::new()
        .with_certificate(certificate)
        .with_public_key("PUB_KEY_ID_0114232134912410000000000000", public_key);
    assert_eq!(
        store.preferred_serial(),
        Some("PUB_KEY_ID_0114232134912410000000000000")
    );
    let body = br#"{"code_url":"weixin://wxpay/bizpayurl?pr=abc"}"#;
    let now = 1_735_689_600;
    for serial in [
        "PUB_KEY_ID_0114232134912410000000000000",
        "440024045C4A427599D09BB4E3DE0279F2E813FD",
    ] {
        let headers = sign_response(&platform_key, serial, now, "nonce", body).unwrap();
        assert_eq!(store.verify(&headers, body, now), Ok(()), "{serial}");
        assert_eq!(
            store.verify(&headers, b"{}", now),
            Err(VerifyError::BadSignature),
            "{serial}"
        );
    }
    // a message signed with another key under the public key id fails
    let headers = sign_response(
        &go_key(),
        "PUB_KEY_ID_0114232134912410000000000000",
        now,
        "nonce",
        body,
    )
    .unwrap();
    assert_eq!(
        store.verify(&headers, body, now),
        Err(VerifyError::BadSignature)
    );
    assert!(matches!(
        VerifyingKey::from_spki_pem(JAVA_WECHAT_PAY_CERT),
        Err(KeyError::Pem(_))
    ));
}

#[test]
fn java_merchant_key_pair_signs_requests_wechat_accepts() {
    let signer = RequestSigner::new(
        "1234567891",
        "5F1C72E2A8931B72A2E13AF8DEE92471EB397115",
        PrivateKey::from_pem(JAVA_MERCHANT_KEY).unwrap(),
    );
    let merchant_certificate = Certificate::from_pem(JAVA_MERCHANT_CERT).unwrap();
    let verifier = AuthorizationVerifier::new().with_merchant(
        "1234567891",
        merchant_certificate.serial_no(),
        merchant_certificate.verifying_key().clone(),
    );
    let signed = signer
        .sign("GET", "/v3/certificates", b"", 1_735_689_600, "NONCE")
        .unwrap();
    verifier
        .verify(
            Some(&signed.authorization),
            "GET",
            "/v3/certificates",
            b"",
            1_735_689_600,
        )
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The mock-side Authorization verifier

fn go_merchant_verifier() -> AuthorizationVerifier {
    AuthorizationVerifier::new().with_merchant(
        "1900000109",
        GO_SERIAL,
        Certificate::from_pem(GO_CERT)
            .unwrap()
            .verifying_key()
            .clone(),
    )
}

#[test]
fn authorization_verifier_rejections() {
    let v = &derived()["request_sign"];
    let header = s(&v["authorization"]);
    let url = s(&v["url"]);
    let body = s(&v["body"]).as_bytes();
    let ts = v["timestamp"].as_i64().unwrap();
    let verifier = go_merchant_verifier();
    let check = |header: Option<&str>, method: &str, url: &str, body: &[u8], now: i64| {
        verifier.verify(header, method, url, body, now)
    };

    assert!(check(Some(header), "POST", url, body, ts).is_ok());
    assert!(check(Some(header), "POST", url, body, ts + 300).is_ok());
    assert!(check(Some(header), "POST", url, body, ts - 300).is_ok());

    // clock
    for now in [ts - 301, ts + 301] {
        assert_eq!(
            check(Some(header), "POST", url, body, now),
            Err(AuthorizationError::TimestampOutOfWindow { timestamp: ts, now })
        );
    }
    // message parts
    let mut tampered = body.to_vec();
    tampered[10] ^= 0x01;
    for (method, url, body) in [
        ("POST", url, tampered.as_slice()),
        ("GET", url, body),
        ("POST", "/v3/pay/transactions/jsapi", body),
    ] {
        let error = check(Some(header), method, url, body, ts).unwrap_err();
        assert!(
            matches!(&error, AuthorizationError::BadSignature(info)
                if info.method == method && info.url == url
                    && info.sign_message_length == request_message(method, url, ts, "A1B2C3D4E5F6G7", body).len()),
            "{error:?}"
        );
        assert_eq!(error.code(), "SIGN_ERROR");
        assert_eq!(error.http_status(), 401);
        assert_eq!(error.message(), "错误的签名，验签失败");
        assert_eq!(error.to_json()["detail"]["issue"], "sign not match");
    }
    // identity
    let wrong_mchid = header.replace("mchid=\"1900000109\"", "mchid=\"1900000110\"");
    assert_eq!(
        check(Some(&wrong_mchid), "POST", url, body, ts),
        Err(AuthorizationError::UnknownMerchant("1900000110".to_owned()))
    );
    let wrong_serial = header.replace(GO_SERIAL, "5F1C72E2A8931B72A2E13AF8DEE92471EB397115");
    let error = check(Some(&wrong_serial), "POST", url, body, ts).unwrap_err();
    assert!(matches!(error, AuthorizationError::UnknownSerial { .. }));
    assert_eq!(
        error.message(),
        "商户证书序列号有误。请使用签名私钥匹配的证书序列号"
    );
    // serial case does not matter
    let lower_serial = header.replace(GO_SERIAL, &GO_SERIAL.to_ascii_lowercase());
    assert!(check(Some(&lower_serial), "POST", url, body, ts).is_ok());
    // signature encoding
    let signature = s(&v["signature"]);
    let truncated = header.replace(signature, &signature[..signature.len() - 1]);
    assert_eq!(
        check(Some(&truncated), "POST", url, body, ts),
        Err(AuthorizationError::MalformedSignature)
    );
    let timestamp_text = header.replace("timestamp=\"1624523846\"", "timestamp=\"16245x3846\"");
    assert_eq!(
        check(Some(&timestamp_text), "POST", url, body, ts),
        Err(AuthorizationError::InvalidTimestamp(
            "16245x3846".to_owned()
        ))
    );
}

#[test]
fn authorization_header_parsing() {
    let v = &derived()["request_sign"];
    let header = s(&v["authorization"]);
    let fields = parse_authorization(header).unwrap();
    assert_eq!(
        fields,
        AuthorizationFields {
            mchid: "1900000109".to_owned(),
            nonce_str: "A1B2C3D4E5F6G7".to_owned(),
            timestamp: "1624523846".to_owned(),
            serial_no: GO_SERIAL.to_owned(),
            signature: s(&v["signature"]).to_owned(),
        }
    );
    // Go's field order (wechatpay-go credential test shape) parses the same
    let go_order = format!(
        "WECHATPAY2-SHA256-RSA2048 mchid=\"1900000109\",nonce_str=\"A1B2C3D4E5F6G7\",timestamp=\"1624523846\",serial_no=\"{GO_SERIAL}\",signature=\"{}\"",
        s(&v["signature"])
    );
    assert_eq!(parse_authorization(&go_order).unwrap(), fields);
    // spaces after commas are tolerated
    assert_eq!(
        parse_authorization(&go_order.replace("\",", "\", ")).unwrap(),
        fields
    );

    let missing = AuthorizationVerifier::new()
        .verify(None, "GET", "/", b"", 0)
        .unwrap_err();
    assert_eq!(missing, AuthorizationError::Missing);
    assert_eq!(
        missing.message(),
        "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》"
    );
    assert_eq!(parse_authorization("  "), Err(AuthorizationError::Missing));

    let without = |field: &str| -> String {
        let parts: Vec<&str> = header
            .trim_start_matches("WECHATPAY2-SHA256-RSA2048 ")
            .split(',')
            .filter(|part| !part.starts_with(&format!("{field}=")))
            .collect();
        format!("WECHATPAY2-SHA256-RSA2048 {}", parts.join(","))
    };
    let mut malformed = vec![
        "WECHATPAY2-SHA256-RSA2048".to_owned(),
        "Bearer sk_test_123".to_owned(),
        header.replacen("WECHATPAY2-SHA256-RSA2048 ", "WECHATPAY2-SHA256-RSA2048", 1),
        header.replace("mchid=\"1900000109\"", "mchid=1900000109"),
        header.replace("mchid=\"1900000109\"", "mchid=\"\""),
        header.replace("mchid=\"1900000109\"", "mchid='1900000109'"),
        header.replace("mchid=\"1900000109\"", "mchid"),
        format!("{header},mchid=\"1900000109\""),
        format!("{header},extra=\"1\""),
        format!("{header},"),
        header.replace(',', ";"),
        header.to_ascii_lowercase(),
    ];
    for field in ["mchid", "nonce_str", "timestamp", "serial_no", "signature"] {
        malformed.push(without(field));
    }
    for bad in &malformed {
        let error = parse_authorization(bad).unwrap_err();
        assert!(
            matches!(error, AuthorizationError::Malformed(_)),
            "{bad}: {error:?}"
        );
        assert_eq!(
            error.message(),
            "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》",
            "{bad}"
        );
        assert!(go_merchant_verifier()
            .verify(Some(bad), "POST", s(&v["url"]), b"", 1624523846)
            .is_err());
    }
    let sm2 = header.replace("WECHATPAY2-SHA256-RSA2048", "WECHATPAY2-SM2-WITH-SM3");
    let error = parse_authorization(&sm2).unwrap_err();
    assert_eq!(
        error,
        AuthorizationError::UnsupportedSchema("WECHATPAY2-SM2-WITH-SM3".to_owned())
    );
    assert_eq!(error.message(), "Http头Authorization认证类型不正确");
}

// ---------------------------------------------------------------------------------------------

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

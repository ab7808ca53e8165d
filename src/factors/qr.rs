//! The `otpauth://` URI as an SVG QR code, for an `<img src="data:image/svg+xml,…">` or
//! inline: what an authenticator app scans.

use qrcode::{EcLevel, QrCode, render::svg};

/// The SVG of a QR code of `text` (error correction M, a quiet zone, at least 200 px).
pub fn svg(text: &str) -> String {
    // An otpauth URI is a few hundred bytes at most: far inside what a QR code holds.
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).expect("a short URI fits a QR code");
    code.render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .build()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_uri_becomes_an_svg_document() {
        let svg = super::svg("otpauth://totp/Acme:ada?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme");
        assert!(svg.starts_with("<?xml") && svg.contains("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(svg.contains("#000000"));
    }
}

package config

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"time"
)

// Currency is an ISO 4217 currency: alphabetic code, numeric code (DE49,
// DE51, 5F2A) and minor units (the exponent: JPY 0, USD 2, KWD 3).
type Currency struct {
	Code       string `json:"code"`
	Numeric    string `json:"numeric"`
	MinorUnits int    `json:"minorUnits"`
}

// BillingCurrency is the currency every mipay card is billed in (CNY).
const BillingCurrency = "156"

// currencies is the network's ISO 4217 table. It is never changed after
// init; callers get copies through CurrencyByNumeric and Currencies.
var currencies = [...]Currency{
	{"CNY", "156", 2}, {"HKD", "344", 2}, {"MOP", "446", 2}, {"TWD", "901", 2}, {"JPY", "392", 0},
	{"KRW", "410", 0}, {"SGD", "702", 2}, {"MYR", "458", 2}, {"THB", "764", 2}, {"VND", "704", 0},
	{"IDR", "360", 2}, {"PHP", "608", 2}, {"INR", "356", 2}, {"PKR", "586", 2}, {"LKR", "144", 2},
	{"NPR", "524", 2}, {"MNT", "496", 2}, {"KZT", "398", 2}, {"AED", "784", 2}, {"SAR", "682", 2},
	{"QAR", "634", 2}, {"KWD", "414", 3}, {"BHD", "048", 3}, {"OMR", "512", 3}, {"JOD", "400", 3},
	{"ILS", "376", 2}, {"TRY", "949", 2}, {"RUB", "643", 2}, {"EUR", "978", 2}, {"GBP", "826", 2},
	{"CHF", "756", 2}, {"SEK", "752", 2}, {"NOK", "578", 2}, {"DKK", "208", 2}, {"PLN", "985", 2},
	{"CZK", "203", 2}, {"HUF", "348", 2}, {"USD", "840", 2}, {"CAD", "124", 2}, {"MXN", "484", 2},
	{"BRL", "986", 2}, {"ARS", "032", 2}, {"CLP", "152", 0}, {"AUD", "036", 2}, {"NZD", "554", 2},
	{"ZAR", "710", 2}, {"EGP", "818", 2}, {"KES", "404", 2}, {"NGN", "566", 2}, {"TND", "788", 3},
	{"ISK", "352", 0}, {"UZS", "860", 2}, {"LAK", "418", 2}, {"KHR", "116", 2}, {"MMK", "104", 2},
}

// CurrencyByNumeric finds an ISO 4217 currency by its numeric code.
func CurrencyByNumeric(numeric string) (Currency, bool) {
	for _, c := range currencies {
		if c.Numeric == numeric {
			return c, true
		}
	}
	return Currency{}, false
}

// CurrencyByCode finds an ISO 4217 currency by its alphabetic code.
func CurrencyByCode(code string) (Currency, bool) {
	for _, c := range currencies {
		if c.Code == code {
			return c, true
		}
	}
	return Currency{}, false
}

// Currencies returns a copy of the currency table.
func Currencies() []Currency { return append([]Currency(nil), currencies[:]...) }

// Country is an ISO 3166 country or region where UnionPay acceptance is
// enabled on the network.
type Country struct {
	Numeric string `json:"numeric"` // ISO 3166-1 numeric, DE19 and 9F1A
	Alpha2  string `json:"alpha2"`
	Name    string `json:"name"`
}

// DomesticCountry is China's ISO 3166 numeric code: a card used there is
// used at home.
const DomesticCountry = "156"

// acceptance is the network's table of countries and regions where
// UnionPay acceptance is enabled (the switch declines elsewhere). Countries
// absent from it (e.g. 408 North Korea, 760 Syria, 010 Antarctica) have no
// acquiring on the network.
var acceptance = [...]Country{
	// Asia
	{"156", "CN", "China"}, {"344", "HK", "Hong Kong SAR"}, {"446", "MO", "Macao SAR"}, {"158", "TW", "Taiwan region"},
	{"392", "JP", "Japan"}, {"410", "KR", "Korea"}, {"702", "SG", "Singapore"}, {"458", "MY", "Malaysia"},
	{"764", "TH", "Thailand"}, {"704", "VN", "Viet Nam"}, {"360", "ID", "Indonesia"}, {"608", "PH", "Philippines"},
	{"116", "KH", "Cambodia"}, {"418", "LA", "Lao PDR"}, {"104", "MM", "Myanmar"}, {"096", "BN", "Brunei"},
	{"626", "TL", "Timor-Leste"}, {"356", "IN", "India"}, {"586", "PK", "Pakistan"}, {"050", "BD", "Bangladesh"},
	{"144", "LK", "Sri Lanka"}, {"524", "NP", "Nepal"}, {"064", "BT", "Bhutan"}, {"462", "MV", "Maldives"},
	{"496", "MN", "Mongolia"}, {"398", "KZ", "Kazakhstan"}, {"860", "UZ", "Uzbekistan"}, {"417", "KG", "Kyrgyzstan"},
	{"762", "TJ", "Tajikistan"}, {"795", "TM", "Turkmenistan"}, {"368", "IQ", "Iraq"}, {"422", "LB", "Lebanon"},
	{"400", "JO", "Jordan"}, {"376", "IL", "Israel"}, {"275", "PS", "Palestine"}, {"682", "SA", "Saudi Arabia"},
	{"784", "AE", "United Arab Emirates"}, {"634", "QA", "Qatar"}, {"414", "KW", "Kuwait"}, {"048", "BH", "Bahrain"},
	{"512", "OM", "Oman"}, {"792", "TR", "Türkiye"}, {"031", "AZ", "Azerbaijan"}, {"051", "AM", "Armenia"},
	{"268", "GE", "Georgia"},
	// Europe
	{"643", "RU", "Russia"}, {"112", "BY", "Belarus"}, {"804", "UA", "Ukraine"}, {"498", "MD", "Moldova"},
	{"616", "PL", "Poland"}, {"203", "CZ", "Czechia"}, {"703", "SK", "Slovakia"}, {"348", "HU", "Hungary"},
	{"642", "RO", "Romania"}, {"100", "BG", "Bulgaria"}, {"688", "RS", "Serbia"}, {"191", "HR", "Croatia"},
	{"705", "SI", "Slovenia"}, {"070", "BA", "Bosnia and Herzegovina"}, {"499", "ME", "Montenegro"},
	{"807", "MK", "North Macedonia"}, {"008", "AL", "Albania"}, {"300", "GR", "Greece"}, {"196", "CY", "Cyprus"},
	{"470", "MT", "Malta"}, {"380", "IT", "Italy"}, {"724", "ES", "Spain"}, {"620", "PT", "Portugal"},
	{"250", "FR", "France"}, {"492", "MC", "Monaco"}, {"056", "BE", "Belgium"}, {"528", "NL", "Netherlands"},
	{"442", "LU", "Luxembourg"}, {"276", "DE", "Germany"}, {"040", "AT", "Austria"}, {"756", "CH", "Switzerland"},
	{"438", "LI", "Liechtenstein"}, {"826", "GB", "United Kingdom"}, {"372", "IE", "Ireland"}, {"352", "IS", "Iceland"},
	{"578", "NO", "Norway"}, {"752", "SE", "Sweden"}, {"208", "DK", "Denmark"}, {"246", "FI", "Finland"},
	{"233", "EE", "Estonia"}, {"428", "LV", "Latvia"}, {"440", "LT", "Lithuania"}, {"020", "AD", "Andorra"},
	{"674", "SM", "San Marino"},
	// Americas
	{"840", "US", "United States"}, {"124", "CA", "Canada"}, {"484", "MX", "Mexico"}, {"320", "GT", "Guatemala"},
	{"084", "BZ", "Belize"}, {"222", "SV", "El Salvador"}, {"340", "HN", "Honduras"}, {"558", "NI", "Nicaragua"},
	{"188", "CR", "Costa Rica"}, {"591", "PA", "Panama"}, {"214", "DO", "Dominican Republic"}, {"332", "HT", "Haiti"},
	{"388", "JM", "Jamaica"}, {"044", "BS", "Bahamas"}, {"052", "BB", "Barbados"}, {"780", "TT", "Trinidad and Tobago"},
	{"533", "AW", "Aruba"}, {"531", "CW", "Curaçao"}, {"136", "KY", "Cayman Islands"}, {"060", "BM", "Bermuda"},
	{"630", "PR", "Puerto Rico"}, {"170", "CO", "Colombia"}, {"218", "EC", "Ecuador"}, {"604", "PE", "Peru"},
	{"068", "BO", "Bolivia"}, {"076", "BR", "Brazil"}, {"600", "PY", "Paraguay"}, {"858", "UY", "Uruguay"},
	{"032", "AR", "Argentina"}, {"152", "CL", "Chile"}, {"328", "GY", "Guyana"}, {"740", "SR", "Suriname"},
	// Africa
	{"818", "EG", "Egypt"}, {"788", "TN", "Tunisia"}, {"012", "DZ", "Algeria"}, {"504", "MA", "Morocco"},
	{"231", "ET", "Ethiopia"}, {"404", "KE", "Kenya"}, {"834", "TZ", "Tanzania"}, {"800", "UG", "Uganda"},
	{"646", "RW", "Rwanda"}, {"108", "BI", "Burundi"}, {"262", "DJ", "Djibouti"}, {"566", "NG", "Nigeria"},
	{"288", "GH", "Ghana"}, {"384", "CI", "Côte d'Ivoire"}, {"686", "SN", "Senegal"}, {"466", "ML", "Mali"},
	{"854", "BF", "Burkina Faso"}, {"562", "NE", "Niger"}, {"148", "TD", "Chad"}, {"120", "CM", "Cameroon"},
	{"266", "GA", "Gabon"}, {"178", "CG", "Congo"}, {"180", "CD", "DR Congo"}, {"024", "AO", "Angola"},
	{"894", "ZM", "Zambia"}, {"716", "ZW", "Zimbabwe"}, {"454", "MW", "Malawi"}, {"508", "MZ", "Mozambique"},
	{"710", "ZA", "South Africa"}, {"072", "BW", "Botswana"}, {"516", "NA", "Namibia"}, {"748", "SZ", "Eswatini"},
	{"426", "LS", "Lesotho"}, {"450", "MG", "Madagascar"}, {"480", "MU", "Mauritius"}, {"690", "SC", "Seychelles"},
	{"174", "KM", "Comoros"}, {"132", "CV", "Cabo Verde"}, {"270", "GM", "Gambia"}, {"324", "GN", "Guinea"},
	{"694", "SL", "Sierra Leone"}, {"430", "LR", "Liberia"}, {"768", "TG", "Togo"}, {"204", "BJ", "Benin"},
	{"478", "MR", "Mauritania"}, {"226", "GQ", "Equatorial Guinea"},
	// Oceania
	{"036", "AU", "Australia"}, {"554", "NZ", "New Zealand"}, {"242", "FJ", "Fiji"}, {"598", "PG", "Papua New Guinea"},
	{"882", "WS", "Samoa"}, {"776", "TO", "Tonga"}, {"548", "VU", "Vanuatu"}, {"090", "SB", "Solomon Islands"},
	{"540", "NC", "New Caledonia"}, {"258", "PF", "French Polynesia"}, {"316", "GU", "Guam"}, {"585", "PW", "Palau"},
}

// AcceptanceCountry finds a country or region where UnionPay acceptance is
// enabled, by ISO 3166 numeric code.
func AcceptanceCountry(numeric string) (Country, bool) {
	for _, c := range acceptance {
		if c.Numeric == numeric {
			return c, true
		}
	}
	return Country{}, false
}

// AcceptanceCountries returns a copy of the acceptance table.
func AcceptanceCountries() []Country { return append([]Country(nil), acceptance[:]...) }

// RateSet is one version of the exchange-rate table: the rates to CNY of
// the currencies it names, effective from an instant.
type RateSet struct {
	Version int64 `json:"version"`
	// EffectiveFrom is when the rates apply; the zero time in the embedded
	// default means "from when the switch loads it".
	EffectiveFrom time.Time `json:"effectiveFrom"`
	// Rates maps an ISO 4217 alphabetic code to CNY per one major unit of
	// that currency, as a decimal string ("0.04712" for JPY): strings keep
	// the digits exact (no float).
	Rates map[string]string `json:"rates"`
}

//go:embed rates.json
var defaultRatesJSON []byte

// DefaultRates returns the embedded bootstrap exchange-rate table.
func DefaultRates() (RateSet, error) {
	var rs RateSet
	if err := json.Unmarshal(defaultRatesJSON, &rs); err != nil {
		return rs, fmt.Errorf("embedded default rates: %w", err)
	}
	return rs, nil
}

// CrossBorder is an issuer's rules for its cards used outside China.
type CrossBorder struct {
	// DomesticOnlyProducts are card products (Cardholder.Product codes)
	// that may pay only in China.
	DomesticOnlyProducts []string `json:"domesticOnlyProducts,omitempty"`
	// BlockedCountries are ISO 3166 numeric codes where the bank's cards
	// are declined.
	BlockedCountries []string `json:"blockedCountries,omitempty"`
	// FeeBasisPoints is the cross-border fee on the billing amount, in
	// hundredths of a percent (100 = 1%), rounded half up to the fen.
	FeeBasisPoints int64 `json:"feeBasisPoints,omitempty"`
}

// MaxFeeBasisPoints bounds a cross-border fee (10%).
const MaxFeeBasisPoints = 1000

func (c CrossBorder) validate(products map[string]bool) error {
	for _, p := range c.DomesticOnlyProducts {
		if !products[p] {
			return fmt.Errorf("domesticOnlyProducts: %q is not a product of this issuer", p)
		}
	}
	for _, n := range c.BlockedCountries {
		if len(n) != 3 || !allDigits(n) {
			return fmt.Errorf("blockedCountries: %q is not an ISO 3166 numeric code", n)
		}
	}
	if c.FeeBasisPoints < 0 || c.FeeBasisPoints > MaxFeeBasisPoints {
		return fmt.Errorf("feeBasisPoints %d must be 0–%d", c.FeeBasisPoints, MaxFeeBasisPoints)
	}
	return nil
}

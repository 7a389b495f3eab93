/**
 * The 164 cities a tenant can pick when creating a session. The city decides the residential proxy, so the
 * catalog only holds large cities where residential exits are plausible; mainland China, Iran and Russia are
 * left out because WhatsApp is blocked or proxy supply is sanctioned there.
 */
import { Array as Arr, Option, Order, Schema } from "effect"

export const Continent = Schema.Literal("Africa", "Asia", "Europe", "North America", "South America", "Oceania")
  .annotations({ title: "continent" })
export type Continent = typeof Continent.Type

export const CitySlug = Schema.String.pipe(
  Schema.pattern(/^[a-z0-9]+(-[a-z0-9]+)*$/, {
    message: () => "must be a city slug such as sao-paulo (lowercase letters and digits joined by single dashes)"
  }),
  Schema.brand("CitySlug"),
  Schema.annotations({ title: "city", description: "city slug, e.g. \"sao-paulo\" or \"new-york\"" })
)
export type CitySlug = typeof CitySlug.Type

export class City extends Schema.Class<City>("City")({
  slug: CitySlug,
  name: Schema.String.annotations({ description: "display name with diacritics, e.g. \"São Paulo\"" }),
  countryCode: Schema.String.pipe(Schema.pattern(/^[A-Z]{2}$/), Schema.annotations({ title: "ISO 3166-1 alpha-2" })),
  country: Schema.String,
  continent: Continent,
  timeZone: Schema.String.annotations({ description: "IANA time zone, e.g. \"Asia/Jakarta\"" }),
  proxySlug: Schema.String.pipe(
    Schema.pattern(/^[a-z0-9]+$/),
    Schema.annotations({ description: "city part of a residential proxy username, e.g. \"saopaulo\"" })
  )
}) {}

const countries = {
  DZ: ["Algeria", "Africa"],
  CI: ["Côte d'Ivoire", "Africa"],
  EG: ["Egypt", "Africa"],
  ET: ["Ethiopia", "Africa"],
  GH: ["Ghana", "Africa"],
  KE: ["Kenya", "Africa"],
  MA: ["Morocco", "Africa"],
  NG: ["Nigeria", "Africa"],
  SN: ["Senegal", "Africa"],
  ZA: ["South Africa", "Africa"],
  TZ: ["Tanzania", "Africa"],
  TN: ["Tunisia", "Africa"],
  UG: ["Uganda", "Africa"],
  BH: ["Bahrain", "Asia"],
  BD: ["Bangladesh", "Asia"],
  KH: ["Cambodia", "Asia"],
  HK: ["Hong Kong", "Asia"],
  IN: ["India", "Asia"],
  ID: ["Indonesia", "Asia"],
  IL: ["Israel", "Asia"],
  JP: ["Japan", "Asia"],
  JO: ["Jordan", "Asia"],
  KZ: ["Kazakhstan", "Asia"],
  KW: ["Kuwait", "Asia"],
  LB: ["Lebanon", "Asia"],
  MY: ["Malaysia", "Asia"],
  NP: ["Nepal", "Asia"],
  OM: ["Oman", "Asia"],
  PK: ["Pakistan", "Asia"],
  PH: ["Philippines", "Asia"],
  QA: ["Qatar", "Asia"],
  SA: ["Saudi Arabia", "Asia"],
  SG: ["Singapore", "Asia"],
  KR: ["South Korea", "Asia"],
  LK: ["Sri Lanka", "Asia"],
  TW: ["Taiwan", "Asia"],
  TH: ["Thailand", "Asia"],
  TR: ["Türkiye", "Asia"],
  AE: ["United Arab Emirates", "Asia"],
  VN: ["Vietnam", "Asia"],
  AT: ["Austria", "Europe"],
  BE: ["Belgium", "Europe"],
  BG: ["Bulgaria", "Europe"],
  CZ: ["Czechia", "Europe"],
  DK: ["Denmark", "Europe"],
  FI: ["Finland", "Europe"],
  FR: ["France", "Europe"],
  DE: ["Germany", "Europe"],
  GR: ["Greece", "Europe"],
  HU: ["Hungary", "Europe"],
  IE: ["Ireland", "Europe"],
  IT: ["Italy", "Europe"],
  NL: ["Netherlands", "Europe"],
  NO: ["Norway", "Europe"],
  PL: ["Poland", "Europe"],
  PT: ["Portugal", "Europe"],
  RO: ["Romania", "Europe"],
  RS: ["Serbia", "Europe"],
  ES: ["Spain", "Europe"],
  SE: ["Sweden", "Europe"],
  CH: ["Switzerland", "Europe"],
  UA: ["Ukraine", "Europe"],
  GB: ["United Kingdom", "Europe"],
  CA: ["Canada", "North America"],
  CR: ["Costa Rica", "North America"],
  DO: ["Dominican Republic", "North America"],
  GT: ["Guatemala", "North America"],
  MX: ["Mexico", "North America"],
  PA: ["Panama", "North America"],
  PR: ["Puerto Rico", "North America"],
  US: ["United States", "North America"],
  AR: ["Argentina", "South America"],
  BR: ["Brazil", "South America"],
  CL: ["Chile", "South America"],
  CO: ["Colombia", "South America"],
  EC: ["Ecuador", "South America"],
  PY: ["Paraguay", "South America"],
  PE: ["Peru", "South America"],
  UY: ["Uruguay", "South America"],
  VE: ["Venezuela", "South America"],
  AU: ["Australia", "Oceania"],
  FJ: ["Fiji", "Oceania"],
  NZ: ["New Zealand", "Oceania"]
} as const satisfies Record<string, readonly [country: string, continent: Continent]>

type Row = readonly [slug: string, name: string, country: keyof typeof countries, timeZone: string, proxySlug: string]

const rows: ReadonlyArray<Row> = [
  // Africa (18)
  ["algiers", "Algiers", "DZ", "Africa/Algiers", "algiers"],
  ["abidjan", "Abidjan", "CI", "Africa/Abidjan", "abidjan"],
  ["cairo", "Cairo", "EG", "Africa/Cairo", "cairo"],
  ["alexandria", "Alexandria", "EG", "Africa/Cairo", "alexandria"],
  ["addis-ababa", "Addis Ababa", "ET", "Africa/Addis_Ababa", "addisababa"],
  ["accra", "Accra", "GH", "Africa/Accra", "accra"],
  ["nairobi", "Nairobi", "KE", "Africa/Nairobi", "nairobi"],
  ["casablanca", "Casablanca", "MA", "Africa/Casablanca", "casablanca"],
  ["rabat", "Rabat", "MA", "Africa/Casablanca", "rabat"],
  ["lagos", "Lagos", "NG", "Africa/Lagos", "lagos"],
  ["abuja", "Abuja", "NG", "Africa/Lagos", "abuja"],
  ["dakar", "Dakar", "SN", "Africa/Dakar", "dakar"],
  ["johannesburg", "Johannesburg", "ZA", "Africa/Johannesburg", "johannesburg"],
  ["cape-town", "Cape Town", "ZA", "Africa/Johannesburg", "capetown"],
  ["durban", "Durban", "ZA", "Africa/Johannesburg", "durban"],
  ["dar-es-salaam", "Dar es Salaam", "TZ", "Africa/Dar_es_Salaam", "daressalaam"],
  ["tunis", "Tunis", "TN", "Africa/Tunis", "tunis"],
  ["kampala", "Kampala", "UG", "Africa/Kampala", "kampala"],
  // Asia (62), Middle East included
  ["manama", "Manama", "BH", "Asia/Bahrain", "manama"],
  ["dhaka", "Dhaka", "BD", "Asia/Dhaka", "dhaka"],
  ["chittagong", "Chittagong", "BD", "Asia/Dhaka", "chittagong"],
  ["phnom-penh", "Phnom Penh", "KH", "Asia/Phnom_Penh", "phnompenh"],
  ["hong-kong", "Hong Kong", "HK", "Asia/Hong_Kong", "hongkong"],
  ["mumbai", "Mumbai", "IN", "Asia/Kolkata", "mumbai"],
  ["new-delhi", "New Delhi", "IN", "Asia/Kolkata", "newdelhi"],
  ["bengaluru", "Bengaluru", "IN", "Asia/Kolkata", "bengaluru"],
  ["hyderabad", "Hyderabad", "IN", "Asia/Kolkata", "hyderabad"],
  ["chennai", "Chennai", "IN", "Asia/Kolkata", "chennai"],
  ["kolkata", "Kolkata", "IN", "Asia/Kolkata", "kolkata"],
  ["pune", "Pune", "IN", "Asia/Kolkata", "pune"],
  ["ahmedabad", "Ahmedabad", "IN", "Asia/Kolkata", "ahmedabad"],
  ["jaipur", "Jaipur", "IN", "Asia/Kolkata", "jaipur"],
  ["lucknow", "Lucknow", "IN", "Asia/Kolkata", "lucknow"],
  ["kochi", "Kochi", "IN", "Asia/Kolkata", "kochi"],
  ["jakarta", "Jakarta", "ID", "Asia/Jakarta", "jakarta"],
  ["surabaya", "Surabaya", "ID", "Asia/Jakarta", "surabaya"],
  ["bandung", "Bandung", "ID", "Asia/Jakarta", "bandung"],
  ["medan", "Medan", "ID", "Asia/Jakarta", "medan"],
  ["semarang", "Semarang", "ID", "Asia/Jakarta", "semarang"],
  ["palembang", "Palembang", "ID", "Asia/Jakarta", "palembang"],
  ["yogyakarta", "Yogyakarta", "ID", "Asia/Jakarta", "yogyakarta"],
  ["malang", "Malang", "ID", "Asia/Jakarta", "malang"],
  ["batam", "Batam", "ID", "Asia/Jakarta", "batam"],
  ["pekanbaru", "Pekanbaru", "ID", "Asia/Jakarta", "pekanbaru"],
  ["makassar", "Makassar", "ID", "Asia/Makassar", "makassar"],
  ["denpasar", "Denpasar", "ID", "Asia/Makassar", "denpasar"],
  ["balikpapan", "Balikpapan", "ID", "Asia/Makassar", "balikpapan"],
  ["tel-aviv", "Tel Aviv", "IL", "Asia/Jerusalem", "telaviv"],
  ["tokyo", "Tokyo", "JP", "Asia/Tokyo", "tokyo"],
  ["osaka", "Osaka", "JP", "Asia/Tokyo", "osaka"],
  ["amman", "Amman", "JO", "Asia/Amman", "amman"],
  ["almaty", "Almaty", "KZ", "Asia/Almaty", "almaty"],
  ["kuwait-city", "Kuwait City", "KW", "Asia/Kuwait", "kuwaitcity"],
  ["beirut", "Beirut", "LB", "Asia/Beirut", "beirut"],
  ["kuala-lumpur", "Kuala Lumpur", "MY", "Asia/Kuala_Lumpur", "kualalumpur"],
  ["johor-bahru", "Johor Bahru", "MY", "Asia/Kuala_Lumpur", "johorbahru"],
  ["kathmandu", "Kathmandu", "NP", "Asia/Kathmandu", "kathmandu"],
  ["muscat", "Muscat", "OM", "Asia/Muscat", "muscat"],
  ["karachi", "Karachi", "PK", "Asia/Karachi", "karachi"],
  ["lahore", "Lahore", "PK", "Asia/Karachi", "lahore"],
  ["islamabad", "Islamabad", "PK", "Asia/Karachi", "islamabad"],
  ["manila", "Manila", "PH", "Asia/Manila", "manila"],
  ["cebu-city", "Cebu City", "PH", "Asia/Manila", "cebucity"],
  ["davao-city", "Davao City", "PH", "Asia/Manila", "davaocity"],
  ["doha", "Doha", "QA", "Asia/Qatar", "doha"],
  ["riyadh", "Riyadh", "SA", "Asia/Riyadh", "riyadh"],
  ["jeddah", "Jeddah", "SA", "Asia/Riyadh", "jeddah"],
  ["singapore", "Singapore", "SG", "Asia/Singapore", "singapore"],
  ["seoul", "Seoul", "KR", "Asia/Seoul", "seoul"],
  ["busan", "Busan", "KR", "Asia/Seoul", "busan"],
  ["colombo", "Colombo", "LK", "Asia/Colombo", "colombo"],
  ["taipei", "Taipei", "TW", "Asia/Taipei", "taipei"],
  ["bangkok", "Bangkok", "TH", "Asia/Bangkok", "bangkok"],
  ["chiang-mai", "Chiang Mai", "TH", "Asia/Bangkok", "chiangmai"],
  ["istanbul", "Istanbul", "TR", "Europe/Istanbul", "istanbul"],
  ["ankara", "Ankara", "TR", "Europe/Istanbul", "ankara"],
  ["dubai", "Dubai", "AE", "Asia/Dubai", "dubai"],
  ["abu-dhabi", "Abu Dhabi", "AE", "Asia/Dubai", "abudhabi"],
  ["ho-chi-minh-city", "Ho Chi Minh City", "VN", "Asia/Ho_Chi_Minh", "hochiminhcity"],
  ["hanoi", "Hanoi", "VN", "Asia/Ho_Chi_Minh", "hanoi"],
  // Europe (34)
  ["vienna", "Vienna", "AT", "Europe/Vienna", "vienna"],
  ["brussels", "Brussels", "BE", "Europe/Brussels", "brussels"],
  ["sofia", "Sofia", "BG", "Europe/Sofia", "sofia"],
  ["prague", "Prague", "CZ", "Europe/Prague", "prague"],
  ["copenhagen", "Copenhagen", "DK", "Europe/Copenhagen", "copenhagen"],
  ["helsinki", "Helsinki", "FI", "Europe/Helsinki", "helsinki"],
  ["paris", "Paris", "FR", "Europe/Paris", "paris"],
  ["marseille", "Marseille", "FR", "Europe/Paris", "marseille"],
  ["berlin", "Berlin", "DE", "Europe/Berlin", "berlin"],
  ["hamburg", "Hamburg", "DE", "Europe/Berlin", "hamburg"],
  ["munich", "Munich", "DE", "Europe/Berlin", "munich"],
  ["frankfurt", "Frankfurt", "DE", "Europe/Berlin", "frankfurt"],
  ["athens", "Athens", "GR", "Europe/Athens", "athens"],
  ["budapest", "Budapest", "HU", "Europe/Budapest", "budapest"],
  ["dublin", "Dublin", "IE", "Europe/Dublin", "dublin"],
  ["rome", "Rome", "IT", "Europe/Rome", "rome"],
  ["milan", "Milan", "IT", "Europe/Rome", "milan"],
  ["amsterdam", "Amsterdam", "NL", "Europe/Amsterdam", "amsterdam"],
  ["oslo", "Oslo", "NO", "Europe/Oslo", "oslo"],
  ["warsaw", "Warsaw", "PL", "Europe/Warsaw", "warsaw"],
  ["krakow", "Kraków", "PL", "Europe/Warsaw", "krakow"],
  ["lisbon", "Lisbon", "PT", "Europe/Lisbon", "lisbon"],
  ["porto", "Porto", "PT", "Europe/Lisbon", "porto"],
  ["bucharest", "Bucharest", "RO", "Europe/Bucharest", "bucharest"],
  ["belgrade", "Belgrade", "RS", "Europe/Belgrade", "belgrade"],
  ["madrid", "Madrid", "ES", "Europe/Madrid", "madrid"],
  ["barcelona", "Barcelona", "ES", "Europe/Madrid", "barcelona"],
  ["stockholm", "Stockholm", "SE", "Europe/Stockholm", "stockholm"],
  ["zurich", "Zürich", "CH", "Europe/Zurich", "zurich"],
  ["geneva", "Geneva", "CH", "Europe/Zurich", "geneva"],
  ["kyiv", "Kyiv", "UA", "Europe/Kyiv", "kyiv"],
  ["london", "London", "GB", "Europe/London", "london"],
  ["manchester", "Manchester", "GB", "Europe/London", "manchester"],
  ["birmingham", "Birmingham", "GB", "Europe/London", "birmingham"],
  // North America (24), Central America and the Caribbean included
  ["toronto", "Toronto", "CA", "America/Toronto", "toronto"],
  ["montreal", "Montréal", "CA", "America/Toronto", "montreal"],
  ["vancouver", "Vancouver", "CA", "America/Vancouver", "vancouver"],
  ["calgary", "Calgary", "CA", "America/Edmonton", "calgary"],
  ["san-jose", "San José", "CR", "America/Costa_Rica", "sanjose"],
  ["santo-domingo", "Santo Domingo", "DO", "America/Santo_Domingo", "santodomingo"],
  ["guatemala-city", "Guatemala City", "GT", "America/Guatemala", "guatemalacity"],
  ["mexico-city", "Mexico City", "MX", "America/Mexico_City", "mexicocity"],
  ["guadalajara", "Guadalajara", "MX", "America/Mexico_City", "guadalajara"],
  ["monterrey", "Monterrey", "MX", "America/Monterrey", "monterrey"],
  ["panama-city", "Panama City", "PA", "America/Panama", "panamacity"],
  ["san-juan", "San Juan", "PR", "America/Puerto_Rico", "sanjuan"],
  ["new-york", "New York", "US", "America/New_York", "newyork"],
  ["los-angeles", "Los Angeles", "US", "America/Los_Angeles", "losangeles"],
  ["chicago", "Chicago", "US", "America/Chicago", "chicago"],
  ["houston", "Houston", "US", "America/Chicago", "houston"],
  ["dallas", "Dallas", "US", "America/Chicago", "dallas"],
  ["miami", "Miami", "US", "America/New_York", "miami"],
  ["atlanta", "Atlanta", "US", "America/New_York", "atlanta"],
  ["washington", "Washington, D.C.", "US", "America/New_York", "washington"],
  ["san-francisco", "San Francisco", "US", "America/Los_Angeles", "sanfrancisco"],
  ["seattle", "Seattle", "US", "America/Los_Angeles", "seattle"],
  ["phoenix", "Phoenix", "US", "America/Phoenix", "phoenix"],
  ["denver", "Denver", "US", "America/Denver", "denver"],
  // South America (18)
  ["buenos-aires", "Buenos Aires", "AR", "America/Argentina/Buenos_Aires", "buenosaires"],
  ["sao-paulo", "São Paulo", "BR", "America/Sao_Paulo", "saopaulo"],
  ["rio-de-janeiro", "Rio de Janeiro", "BR", "America/Sao_Paulo", "riodejaneiro"],
  ["brasilia", "Brasília", "BR", "America/Sao_Paulo", "brasilia"],
  ["belo-horizonte", "Belo Horizonte", "BR", "America/Sao_Paulo", "belohorizonte"],
  ["curitiba", "Curitiba", "BR", "America/Sao_Paulo", "curitiba"],
  ["porto-alegre", "Porto Alegre", "BR", "America/Sao_Paulo", "portoalegre"],
  ["salvador", "Salvador", "BR", "America/Bahia", "salvador"],
  ["fortaleza", "Fortaleza", "BR", "America/Fortaleza", "fortaleza"],
  ["recife", "Recife", "BR", "America/Recife", "recife"],
  ["santiago", "Santiago", "CL", "America/Santiago", "santiago"],
  ["bogota", "Bogotá", "CO", "America/Bogota", "bogota"],
  ["medellin", "Medellín", "CO", "America/Bogota", "medellin"],
  ["quito", "Quito", "EC", "America/Guayaquil", "quito"],
  ["asuncion", "Asunción", "PY", "America/Asuncion", "asuncion"],
  ["lima", "Lima", "PE", "America/Lima", "lima"],
  ["montevideo", "Montevideo", "UY", "America/Montevideo", "montevideo"],
  ["caracas", "Caracas", "VE", "America/Caracas", "caracas"],
  // Oceania (8)
  ["sydney", "Sydney", "AU", "Australia/Sydney", "sydney"],
  ["melbourne", "Melbourne", "AU", "Australia/Melbourne", "melbourne"],
  ["brisbane", "Brisbane", "AU", "Australia/Brisbane", "brisbane"],
  ["perth", "Perth", "AU", "Australia/Perth", "perth"],
  ["adelaide", "Adelaide", "AU", "Australia/Adelaide", "adelaide"],
  ["suva", "Suva", "FJ", "Pacific/Fiji", "suva"],
  ["auckland", "Auckland", "NZ", "Pacific/Auckland", "auckland"],
  ["wellington", "Wellington", "NZ", "Pacific/Auckland", "wellington"]
]

const collator = new Intl.Collator("en")
const byText = Order.make<string>((a, b) => {
  const result = collator.compare(a, b)
  return result < 0 ? -1 : result > 0 ? 1 : 0
})

const byPlace = Order.combineAll<City>([
  Order.mapInput(byText, (city: City) => city.continent),
  Order.mapInput(byText, (city: City) => city.country),
  Order.mapInput(byText, (city: City) => city.name)
])

/** The whole catalog, sorted by continent, then country, then city name (the order a picker shows). */
export const cities: ReadonlyArray<City> = Arr.sort(
  rows.map(([slug, name, countryCode, timeZone, proxySlug]) => {
    const [country, continent] = countries[countryCode]
    return new City({ slug: CitySlug.make(slug), name, countryCode, country, continent, timeZone, proxySlug })
  }),
  byPlace
)

/** "  São Paulo " → "sao-paulo": what a user types, reduced to slug shape. */
const normalize = (input: string): string =>
  input
    .normalize("NFD")
    .replace(/\p{M}/gu, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")

const index: ReadonlyMap<string, City> = new Map(
  cities.flatMap((city) => [[city.slug, city], [normalize(city.name), city]] as const)
)

/** Finds a city by slug or display name, ignoring case, diacritics, punctuation and surrounding whitespace. */
export const findCity = (input: string): Option.Option<City> => Option.fromNullable(index.get(normalize(input)))

package main

import (
	"fmt"

	"github.com/mipay-oss/mipay/config"
)

// cityDef is one transit agency of the demo data. Fares, fees and caps are
// in the style of each city's real tariff (rounded, not authoritative); the
// AIDs and card prefixes are invented.
type cityDef struct {
	id, name, product, art string
	bus, issueFee          int64
	maxBalance             int64
	minEntry               int64
	transfers              int
	stations               []string // on one line, 1.5–2.4 km apart
	bands                  []config.FareBand
}

var cityDefs = []cityDef{
	{"bj", "Beijing", "Beijing Yikatong (Mi Pay)", "#1E4E9C/#0F2D5E", 100, 0, 100000, 300, 1,
		[]string{"Pingguoyuan", "Gucheng", "Babaoshan", "Wukesong", "Gongzhufen", "Muxidi", "Xidan", "Tiananmen West", "Wangfujing", "Dongdan", "Guomao", "Sihui"},
		[]config.FareBand{{UpToKM: 6, FareMinor: 300}, {UpToKM: 12, FareMinor: 400}, {UpToKM: 22, FareMinor: 500}, {UpToKM: 32, FareMinor: 600}, {UpToKM: 1000, FareMinor: 700}}},
	{"sh", "Shanghai", "Shanghai Public Transportation Card (Mi Pay)", "#E60027/#8C0018", 200, 0, 100000, 300, 2,
		[]string{"Xinzhuang", "Shanghai Indoor Stadium", "Xujiahui", "South Shaanxi Road", "People's Square", "Shanghai Railway Station", "Yanchang Road", "Shanghai Circus World", "Tonghe Xincun", "Fujin Road"},
		[]config.FareBand{{UpToKM: 6, FareMinor: 300}, {UpToKM: 16, FareMinor: 400}, {UpToKM: 26, FareMinor: 500}, {UpToKM: 1000, FareMinor: 600}}},
	{"sz", "Shenzhen", "Shenzhen Tong (Mi Pay)", "#00A0E9/#005E8A", 200, 1000, 100000, 200, 0,
		[]string{"Luohu", "Guomao", "Laojie", "Grand Theater", "Science Museum", "Huaqiang Road", "Gangxia", "Convention Center", "Shopping Park", "Xiangmihu", "Window of the World", "Shenzhen University"},
		[]config.FareBand{{UpToKM: 4, FareMinor: 200}, {UpToKM: 12, FareMinor: 300}, {UpToKM: 24, FareMinor: 400}, {UpToKM: 1000, FareMinor: 500}}},
	{"gz", "Guangzhou", "Lingnan Pass / Yang Cheng Tong (Mi Pay)", "#009944/#005C29", 200, 0, 100000, 200, 1,
		[]string{"Xilang", "Kengkou", "Huadiwan", "Fangcun", "Huangsha", "Changshou Lu", "Chen Clan Academy", "Ximenkou", "Gongyuanqian", "Nongjiang Suo", "Guangzhou East Railway Station"},
		[]config.FareBand{{UpToKM: 4, FareMinor: 200}, {UpToKM: 12, FareMinor: 300}, {UpToKM: 24, FareMinor: 400}, {UpToKM: 1000, FareMinor: 500}}},
	{"wh", "Wuhan", "Wuhan Tong (Mi Pay)", "#F39800/#A86900", 200, 0, 100000, 200, 0,
		[]string{"Jinyintan", "Zongguan", "Xunlimen", "Jiangtan", "Jianghan Road", "Chegongzhuang", "Zhongshan Park", "Hankou Railway Station", "Xiaoguishan", "Optics Valley Square"},
		[]config.FareBand{{UpToKM: 9, FareMinor: 200}, {UpToKM: 14, FareMinor: 300}, {UpToKM: 21, FareMinor: 400}, {UpToKM: 1000, FareMinor: 500}}},
	{"cq", "Chongqing", "Chongqing Changjiang Tong (Mi Pay)", "#6F2C91/#44195A", 200, 0, 100000, 200, 1,
		[]string{"Chaotianmen", "Xiaoshizi", "Jiaochangkou", "Huangjueping", "Niujiaotuo", "Lianglukou", "Daping", "Shapingba", "Xiaolongkan", "Jiaoyuanchang"},
		[]config.FareBand{{UpToKM: 6, FareMinor: 200}, {UpToKM: 11, FareMinor: 300}, {UpToKM: 17, FareMinor: 400}, {UpToKM: 1000, FareMinor: 500}}},
}

// cities builds the six transit agencies. Station markers are deterministic
// (the generator's rng), so the file reproduces byte for byte.
func (g *gen) cities() []config.City {
	out := make([]config.City, 0, len(cityDefs))
	for i, d := range cityDefs {
		c := config.City{
			ID: d.id, Name: d.name, Product: d.product, Art: d.art,
			AID:        fmt.Sprintf("A00000063201010%d", 1+i), // invented, in the style of T-Union AIDs
			CardPrefix: fmt.Sprintf("31%02d", 10+i), CardDigits: 16,
			BusFareMinor: d.bus, MinEntryBalanceMinor: d.minEntry,
			IssueFeeMinor: d.issueFee, MaxBalanceMinor: d.maxBalance, TransfersPerYear: d.transfers,
			FareBands: d.bands,
		}
		km := 0.0
		for k, name := range d.stations {
			if k > 0 {
				km += 1.5 + float64(g.rng.IntN(10))/10
			}
			c.Stations = append(c.Stations, config.Station{ID: fmt.Sprintf("%s%02d", d.id, k+1), Name: name, KM: float64(int(km*10+0.5)) / 10})
		}
		out = append(out, c)
	}
	return out
}

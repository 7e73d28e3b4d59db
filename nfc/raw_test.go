package nfc

import "net"

func dialRaw(addr string) (net.Conn, error) { return net.Dial("tcp", addr) }

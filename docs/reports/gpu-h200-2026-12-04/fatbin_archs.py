import struct, sys, collections, mmap
for path in sys.argv[1:]:
    f = open(path, "rb"); m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    c = collections.Counter(); pos = 0
    while True:
        i = m.find(b"\x50\xed\x55\xba", pos)
        if i < 0: break
        ver, hsize, fsize = struct.unpack_from("<HHQ", m, i + 4)
        if hsize != 16 or fsize > len(m): pos = i + 4; continue
        e = i + hsize; end = e + fsize
        while e < end:
            kind, _, ehs, size = struct.unpack_from("<HHIQ", m, e)
            if ehs < 32 or ehs > 256: break
            arch = struct.unpack_from("<I", m, e + 28)[0]
            c[("PTX" if kind == 1 else "ELF" if kind == 2 else str(kind), arch)] += 1
            e += ehs + size
        pos = end if end > i else i + 4
    print(path.split("/")[-1], sorted(c.items()))

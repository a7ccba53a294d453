# Allocates 256 MiB: more than a 64M limit allows.
balloon = bytearray(256 * 2**20)
print("allocated", len(balloon))

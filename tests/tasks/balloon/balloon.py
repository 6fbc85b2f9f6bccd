hoard = []
print("eating", flush=True)
while True:
    hoard.append(bytearray(1 << 20))

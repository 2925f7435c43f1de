/*
 * bcryptprimitives.dll for Wine 8.0 (Debian 12), which lacks ProcessPrng:
 * the Go runtime (1.24+) calls it for random bytes at start. It forwards to
 * advapi32's SystemFunction036 (RtlGenRandom), which Wine has. Built by the
 * Wine test (test/integration) with x86_64-w64-mingw32-gcc; never shipped.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
		if (!SystemFunction036(data, n))
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}

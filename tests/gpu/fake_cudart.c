/* A stand-in for libcudart.so.12 that the loader test builds: every function the loader
 * resolves, returning success, except cudaGetDeviceCount, whose result the test chooses with
 * TW_FAKE_CUDA_ERROR (a cudaError_t; 0 reports two devices), cudaMallocHost and cudaMalloc,
 * which fail with error 2. Never calls anything real. */
#include <stddef.h>
#include <stdlib.h>

int cudaGetDeviceCount(int* count) {
  const char* e = getenv("TW_FAKE_CUDA_ERROR");
  int error = e != NULL ? atoi(e) : 100;
  *count = error == 0 ? 2 : 0;
  return error;
}
const char* cudaGetErrorName(int error) { return error == 0 ? "cudaSuccess" : "cudaErrorFake"; }
const char* cudaGetErrorString(int error) { return error == 0 ? "no error" : "fake error"; }
int cudaDriverGetVersion(int* v) { *v = 12040; return 0; }
int cudaRuntimeGetVersion(int* v) { *v = 12040; return 0; }
int cudaSetDevice(int d) { (void)d; return 0; }
int cudaMallocHost(void** p, size_t n) { (void)p; (void)n; return 2; }
int cudaFreeHost(void* p) { (void)p; return 0; }
int cudaHostRegister(void* p, size_t n, unsigned f) { (void)p; (void)n; (void)f; return 0; }
int cudaHostUnregister(void* p) { (void)p; return 0; }
int cudaMalloc(void** p, size_t n) { (void)p; (void)n; return 2; }
int cudaFree(void* p) { (void)p; return 0; }
static char fake_stream, fake_event;
int cudaStreamCreateWithFlags(void** s, unsigned f) { (void)f; *s = &fake_stream; return 0; }
int cudaStreamDestroy(void* s) { (void)s; return 0; }
int cudaStreamSynchronize(void* s) { (void)s; return 0; }
int cudaMemcpyAsync(void* d, const void* s, size_t n, int k, void* st) {
  (void)d; (void)s; (void)n; (void)k; (void)st; return 0;
}
int cudaMemcpy2DAsync(void* d, size_t dp, const void* s, size_t sp, size_t w, size_t h, int k,
                      void* st) {
  (void)d; (void)dp; (void)s; (void)sp; (void)w; (void)h; (void)k; (void)st; return 0;
}
int cudaStreamWaitEvent(void* s, void* e, unsigned f) { (void)s; (void)e; (void)f; return 0; }
/* Runs the function at once: the fake has no device to wait for. */
int cudaLaunchHostFunc(void* s, void (*fn)(void*), void* u) { (void)s; fn(u); return 0; }
int cudaEventCreateWithFlags(void** e, unsigned f) { (void)f; *e = &fake_event; return 0; }
int cudaEventDestroy(void* e) { (void)e; return 0; }
int cudaEventRecord(void* e, void* s) { (void)e; (void)s; return 0; }
int cudaEventQuery(void* e) { (void)e; return 0; }
int cudaEventSynchronize(void* e) { (void)e; return 0; }
typedef struct { char reserved[64]; } IpcHandle;
int cudaIpcGetMemHandle(IpcHandle* h, void* p) { (void)h; (void)p; return 0; }
int cudaIpcOpenMemHandle(void** p, IpcHandle h, unsigned f) { (void)p; (void)h; (void)f; return 0; }
int cudaIpcCloseMemHandle(void* p) { (void)p; return 0; }
